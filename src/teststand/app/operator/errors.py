"""The operator's typed errors: each carries the RE Manager's message and what to do."""

from __future__ import annotations

from teststand.errors import TeststandError


class OperatorError(TeststandError):
    """A queue server request failed; the message says what to do."""


class ManagerUnreachable(OperatorError):
    """No RE Manager answers at the 0MQ address."""


class RequestRefused(OperatorError, ValueError):
    """The RE Manager refused a request (unknown plan, bad parameters, not permitted...)."""


class LockError(RequestRefused):
    """The RE Manager is locked and the request came without its lock key (or a wrong one)."""


class EnvironmentClosed(OperatorError):
    """The request needs the worker environment, which is closed."""


class EnvironmentOpenFailed(OperatorError):
    """The worker environment did not open: its startup code failed."""

    def __init__(self, message: str, *, error_type: str | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type


class ItemNotFound(OperatorError, KeyError):
    """No queue item with this uid in the queue, running, or in the history."""

    def __str__(self) -> str:
        return str(self.args[0])


class FollowTimeout(OperatorError, TimeoutError):
    """The followed item did not finish in time (it goes on)."""
