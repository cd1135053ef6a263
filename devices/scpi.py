"""SCPI shared by the Keithley and Rohde & Schwarz drivers: reply parsers and a client base.

A SCPI instrument answers nothing to a setting, and nothing to a command it cannot carry out: the
error goes to its queue (`:SYST:ERR?`). `ScpiClient` therefore drains the queue after every
configuration sequence and raises `ScpiError` listing what the instrument reported.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from teststand.devices._client import ProtocolClient
from teststand.devices._numbers import parse_integer, parse_number
from teststand.errors import ReplyFormatError, TeststandError, TransportError, TransportTimeout

log = logging.getLogger("teststand.devices")
T = TypeVar("T")

#: A 2400-series reading of an element that was not measured (NaN) and of an overflow.
NOT_A_NUMBER = 9.91e37
OVERFLOW = 9.9e37


#: Keithley ASCII numbers as the 2400 manual shows them and the simulator writes them: one digit,
#: six decimals, a two-digit exponent; a reading element always signed (`+1.000000E+02`), a
#: setting (and a 2450 buffer reading) signed only when negative (`1.050000E-04`).
KEITHLEY_READING = re.compile(r"[+-][0-9]\.[0-9]{6}E[+-][0-9]{2}")
KEITHLEY_NUMBER = re.compile(r"-?[0-9]\.[0-9]{6}E[+-][0-9]{2}")


def parse_float(text: str, form: re.Pattern[str] | None = None) -> float:
    """One SCPI number; 9.91e37 reads as NaN and ±9.9e37 as ±inf.

    With `form` (an instrument's exact number format, for `strict_formats`) a number that lost
    or gained a digit is a ReplyFormatError too.
    """
    if form is not None and form.fullmatch(text.strip(" ")) is None:
        raise ReplyFormatError(f"expected a number such as {form.pattern!r}, got {text!r}")
    value = parse_number(text)
    if math.isclose(abs(value), NOT_A_NUMBER, rel_tol=1e-6):
        return math.nan
    if math.isclose(abs(value), OVERFLOW, rel_tol=1e-6):
        return math.copysign(math.inf, value)
    return value


def parse_floats(
    text: str, count: int | None = None, form: re.Pattern[str] | None = None
) -> list[float]:
    """Comma-separated numbers; with `count`, exactly that many (`form` as in `parse_float`)."""
    values = [parse_float(item, form) for item in text.split(",")]
    if count is not None and len(values) != count:
        raise ReplyFormatError(f"expected {count} numbers, got {len(values)} in {text!r}")
    return values


def parse_bool(text: str) -> bool:
    value = text.strip(" ")
    if value in ("1", "ON"):
        return True
    if value in ("0", "OFF"):
        return False
    raise ReplyFormatError(f"expected 0 or 1, got {text!r}")


_ERROR = re.compile(r'([+-]?[0-9]+),"([\x20\x21\x23-\x7e]*)"')


def parse_error(text: str) -> tuple[int, str]:
    """A `:SYST:ERR?` reply such as `-113,"Undefined header"`; code 0 means no error."""
    match = _ERROR.fullmatch(text.strip(" "))
    if match is None:
        raise ReplyFormatError(f"not an error-queue reply: {text!r}")
    return parse_integer(match[1]), match[2]


@dataclass(frozen=True)
class Identity:
    manufacturer: str
    model: str
    serial: str
    firmware: str


def parse_idn(text: str) -> Identity:
    """A `*IDN?` reply: four comma-separated printable fields."""
    fields = [f.strip() for f in text.split(",")]
    printable = text.isascii() and text.isprintable()
    if not printable or len(fields) != 4 or not all(fields[:2]):
        raise ReplyFormatError(f"not an *IDN? reply: {text!r}")
    return Identity(*fields)


# -- the error queue ---------------------------------------------------------------------------

#: What to do about the SCPI errors a driver user can cause, by code.
ERROR_HINTS = {
    -221: "a setting was refused: the unit is under LOCAL (front-panel) control or the setting "
    "conflicts with another; return it to remote control and check the values",
    -222: "a value is outside the range of this model or of the present range setting",
    -224: "a parameter is not one of the values this command accepts",
    -113: "a command this model does not know: check the model / dialect of the device",
    -350: "the error queue overflowed; earlier errors were lost",
    803: "the output is off: switch it on first",
}


@dataclass(frozen=True)
class QueuedError:
    """One entry of the instrument's error queue."""

    code: int
    message: str

    def __str__(self) -> str:
        hint = ERROR_HINTS.get(self.code)
        return f'{self.code},"{self.message}"' + (f" ({hint})" if hint else "")


class ScpiError(TeststandError):
    """The instrument queued errors for commands it did not carry out; `errors` lists them."""

    def __init__(self, instrument: str, url: str, errors: Sequence[QueuedError], after: str):
        self.instrument = instrument
        self.url = url
        self.errors = tuple(errors)
        self.after = after
        listed = "; ".join(str(error) for error in self.errors)
        count = f"{len(self.errors)} error{'s' if len(self.errors) != 1 else ''}"
        super().__init__(
            f"{instrument} ({url}): the instrument reported {count} after {after}: {listed}. "
            "Nothing after the first failing command can be relied on: fix the cause and repeat"
        )

    @property
    def codes(self) -> tuple[int, ...]:
        return tuple(error.code for error in self.errors)


class ScpiClient(ProtocolClient):
    """A SCPI instrument's client: `send` settings, `query`, `configure` (send, then drain the
    error queue), `drain_errors`.

    `lock` serialises sequences that must not interleave with other callers on the link (a channel
    selection and the command that uses it; settings and the error check that follows them).
    The transport's own lock covers single exchanges only. Hold `lock` around `send`, `query` and
    `read_errors`; the compound methods take it themselves.
    """

    #: Entries read from the queue at most before giving up (a queue never says 0 otherwise).
    max_errors = 32

    def __init__(self, url: str, *, name: str, **link_defaults: object) -> None:
        super().__init__(url, name=name, **link_defaults)
        self.lock = asyncio.Lock()

    async def send(self, *commands: str) -> None:
        """Write commands that have no reply (settings), one line each."""
        for command in commands:
            await self.transport.write(command, idempotent=True)

    async def query(self, command: str, parse: Callable[[str], T], *, idempotent: bool = True) -> T:
        """One query; when it gets no reply, the error queue (if it says why) is raised instead."""
        try:
            return await self.transport.query(command, parse, idempotent=idempotent)
        except TransportTimeout as timeout:
            try:
                errors = await self.read_errors()
            except TransportError:
                raise timeout from None
            if errors:
                raise self.error(errors, f"{command!r} got no reply") from timeout
            raise

    async def read_errors(self, *, retry: bool = False) -> list[QueuedError]:
        """Empty the error queue (`:SYST:ERR?` until `0,...`) and return what it held. Each
        query removes an entry, so a retry may lose one: `retry` only where losing one is
        harmless (the stale errors of an earlier session)."""
        errors: list[QueuedError] = []
        for _ in range(self.max_errors):
            code, message = await self.transport.query(":SYST:ERR?", parse_error, idempotent=retry)
            if code == 0:
                break
            errors.append(QueuedError(code, message))
        return errors

    def error(self, errors: Sequence[QueuedError], after: str) -> ScpiError:
        return ScpiError(self.name, self.url, errors, after)

    async def raise_queued(self, after: str) -> None:
        """Drain the queue and raise `ScpiError` if it held anything (caller holds `lock`)."""
        errors = await self.read_errors()
        if errors:
            raise self.error(errors, after)

    async def drain_errors(self, after: str = "the last commands") -> None:
        """Drain the error queue; raise `ScpiError` listing every queued error."""
        async with self.lock:
            await self.raise_queued(after)

    async def configure(self, *commands: str, after: str | None = None) -> None:
        """Send settings, then drain the error queue: a refused setting raises `ScpiError`."""
        async with self.lock:
            await self.send(*commands)
            await self.raise_queued(after or " then ".join(repr(c) for c in commands))

    async def identify(self) -> Identity:
        return await self.query("*IDN?", parse_idn)

    async def discard_stale_errors(self) -> None:
        """On connect: errors left from an earlier session are logged, not blamed on us; a
        reply lost on a busy link is asked for again (an entry lost so is only a stale one)."""
        async with self.lock:
            for error in await self.read_errors(retry=True):
                log.warning("%s: error left in the queue from before: %s", self.name, error)
