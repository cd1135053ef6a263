"""The web page's typed errors: each message says what was wrong and what to do."""

from __future__ import annotations

from teststand.errors import TeststandError


class WebError(TeststandError):
    """A problem of `teststand web` (its options, its users file, a request it refuses)."""


class UsersFileError(WebError, ValueError):
    """The users file is missing, unreadable or malformed (the message names the entry)."""


class BindRefused(WebError):
    """Serving off loopback without authentication (a users file) configured."""


class LoginRefused(WebError, PermissionError):
    """A wrong user name or password, or an expired session."""


class ActionRefused(WebError, PermissionError):
    """An action the session's user may not take (an observer, or control held by another)."""
