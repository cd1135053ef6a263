"""Typed storage errors: each says what was wrong and what to do."""

from __future__ import annotations

from teststand.errors import TeststandError


class StorageError(TeststandError):
    """A problem storing runs in Tiled or in the local journal."""


class TiledUnreachable(StorageError):
    """The Tiled server does not answer at its URI."""


class TiledAuthError(StorageError):
    """The Tiled server refused the API key (or none was given)."""


class ServerConfigError(StorageError, ValueError):
    """`teststand tiled serve` cannot start with these options or this config file."""


class InsecureBind(ServerConfigError):
    """A server bound to a non-loopback address without an API key or authentication."""


class JournalError(StorageError):
    """The local journal cannot be written or read."""


class JournalSpaceLow(UserWarning):
    """The journal's disk has less free space than the configured minimum."""
