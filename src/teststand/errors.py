"""Typed errors of the stand. Each says what went wrong, on which instrument, and what to do."""

from __future__ import annotations


class TeststandError(Exception):
    """Base of every error the package raises on purpose."""


class ReplyFormatError(ValueError):
    """Raised by a reply parser: the reply does not follow the protocol (garbled or truncated).

    Parsers raise it without context; the transport turns it into `GarbledReply` and retries.
    """


class ReplyRefused(Exception):
    """Raised by a reply parser: the instrument understood and answered with an error code."""

    def __init__(self, code: str, meaning: str = "") -> None:
        self.code = code
        self.meaning = meaning
        super().__init__(f"{code}{': ' + meaning if meaning else ''}")


class TransportError(TeststandError):
    """A failure talking to one instrument: names the instrument, the URL and the command."""

    def __init__(
        self,
        problem: str,
        *,
        url: str,
        instrument: str = "",
        command: str | None = None,
        hint: str = "",
    ) -> None:
        self.problem = problem
        self.url = url
        self.instrument = instrument
        self.command = command
        self.hint = hint
        who = f"{instrument} ({url})" if instrument else url
        during = f" while sending {command!r}" if command is not None else ""
        advice = f". {hint}" if hint else ""
        super().__init__(f"{who}: {problem}{during}{advice}")


class InvalidURL(TransportError, ValueError):
    """The URL or one of its options is wrong: unknown scheme, option, baud rate or simulator."""


class PortUnavailable(TransportError):
    """The port cannot be opened: missing device node, permission denied, nothing listening."""


class InstrumentBusy(TransportError):
    """Another program (or another part of this one) already owns the instrument."""

    def __init__(
        self, problem: str, *, url: str, owner_pid: int | None, owner_command: str, **kw: str
    ) -> None:
        self.owner_pid = owner_pid
        self.owner_command = owner_command
        super().__init__(problem, url=url, **kw)


class TransportTimeout(TransportError):
    """No complete reply arrived in time."""


class GarbledReply(TransportError):
    """A reply arrived but does not parse; it was never turned into a value."""

    def __init__(self, problem: str, *, url: str, reply: bytes, **kw: str) -> None:
        self.reply = reply
        super().__init__(problem, url=url, **kw)


class LinkLost(TransportError):
    """The link broke (cable unplugged, socket closed) and could not be re-established."""


class InstrumentRefused(TransportError):
    """The instrument answered with an error code (bad parameter, LOCAL control, …)."""

    def __init__(self, problem: str, *, url: str, code: str, **kw: str) -> None:
        self.code = code
        super().__init__(problem, url=url, **kw)
