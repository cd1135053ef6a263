"""The queue server's typed errors."""

from __future__ import annotations

from teststand.errors import TeststandError


class QserverError(TeststandError):
    """A queue server command failed; the message says what to do."""


class QserverConfigError(QserverError, ValueError):
    """A bad option or a missing profile file."""


class RedisUnreachable(QserverError):
    """The given Redis does not answer PING."""


class PortInUse(QserverError):
    """A port the queue server needs is taken."""


class AlreadyRunning(QserverError):
    """The state directory names processes that still run."""


class StartFailed(QserverError):
    """A process exited or did not answer during start; everything started was stopped."""


class ManagerBusy(QserverError):
    """The RE Manager is not idle (a plan runs or is paused), so a safe stop is refused."""
