"""Async client of a CAEN HV supply, 803x (DT8033: 8 channels) or 14xx (N1470: 4 channels)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from teststand.devices._backend import SingleFlight
from teststand.devices._client import ProtocolClient
from teststand.devices._numbers import parse_number
from teststand.devices.caen import protocol
from teststand.errors import InstrumentRefused, TeststandError
from teststand.roles import RampFailed

Dialect = Literal["803x", "14xx"]

#: Status bit names, bit 0 first, per family (the two families differ from bit 6 on).
STATUS_BITS: dict[Dialect, tuple[str, ...]] = {
    "803x": (
        "ON",
        "RUP",
        "RDW",
        "OVC",
        "OVV",
        "UNV",
        "TRIP",
        "OVP",
        "TWN",
        "OVT",
        "KILL",
        "ILK",
        "DIS",
        "FAIL",
    ),
    "14xx": (
        "ON",
        "RUP",
        "RDW",
        "OVC",
        "OVV",
        "UNV",
        "MAXV",
        "TRIP",
        "OVP",
        "OVT",
        "DIS",
        "KILL",
        "ILK",
        "NOCAL",
    ),
}
#: Flags that end a ramp with an error.
FAULT_FLAGS = frozenset({"TRIP", "KILL", "ILK", "DIS", "FAIL", "OVT", "OVP"})
RAMP_DOWN_NAMES = ("RDW", "RDWN", "RAMPDOWN")


class CaenError(TeststandError):
    """A CAEN channel did something the caller must know about (trip, switched off, …)."""


class CaenRampError(CaenError, RampFailed):
    """A ramp that failed: the channel tripped, was switched off, or did not arrive in time."""


@dataclass(frozen=True)
class ChannelStatus:
    word: int
    flags: frozenset[str]

    @property
    def on(self) -> bool:
        return "ON" in self.flags

    @property
    def ramping(self) -> bool:
        return bool({"RUP", "RDW"} & self.flags)

    @property
    def faults(self) -> frozenset[str]:
        return self.flags & FAULT_FLAGS

    @property
    def in_compliance(self) -> bool:
        """At the current limit (OVC) or tripped on it (TRIP)."""
        return bool({"OVC", "TRIP"} & self.flags)

    def __str__(self) -> str:
        return "|".join(sorted(self.flags)) or "OFF"


def decode_status(word: int, dialect: Dialect) -> ChannelStatus:
    names = STATUS_BITS[dialect]
    return ChannelStatus(word, frozenset(n for bit, n in enumerate(names) if word >> bit & 1))


class CaenClient(ProtocolClient):
    """`await caen.mon("VMON", ch)`, group reads with `mon_all`, `set`, `on`, `off`."""

    def __init__(
        self, url: str, *, dialect: Dialect = "803x", board: int = 0, name: str = "caen"
    ) -> None:
        # The manuals fix each parameter's reply format: checked strictly unless the URL says
        # `strict_formats=0`.
        super().__init__(
            url, name=name, terminator="CRLF", baudrate=9600, timeout=1.0, strict_formats=True
        )
        if dialect not in STATUS_BITS:
            raise ValueError(f"unknown CAEN dialect {dialect!r}; use 803x or 14xx")
        if not 0 <= board <= 31:
            raise ValueError(f"CAEN board address {board} out of range 0..31")
        self.dialect: Dialect = dialect
        self.board = board if dialect == "14xx" else None
        self.channels = 8 if dialect == "803x" else 4
        self.ramp_down_name = "RDW"
        self._groups: dict[str, SingleFlight[list[str]]] = {}

    async def on_open(self) -> None:
        self.ramp_down_name = await self._discover_ramp_down()

    async def _discover_ramp_down(self) -> str:
        for name in RAMP_DOWN_NAMES:
            try:
                await self.mon(name, 0)
            except InstrumentRefused as exc:
                if exc.code != "PAR:ERR":
                    raise
                continue
            return name
        raise CaenError(
            f"{self.name} ({self.url}): the supply accepts none of {', '.join(RAMP_DOWN_NAMES)} "
            "as its ramp-down parameter; check the firmware and the dialect"
        )

    def _command(self, verb: str, par: str, ch: int, value: float | str | None = None) -> str:
        return protocol.command(verb, par, channel=ch, value=value, board=self.board)

    async def mon(self, par: str, ch: int) -> str:
        """One channel's value of `par`, as text."""
        values = await self.transport.query(
            self._command("MON", par, ch), self._values(par, 1), idempotent=True
        )
        return values[0]

    async def mon_all(self, par: str) -> list[str]:
        """Every channel's value of `par` in one round trip (`CH:8` or `CH:4`); concurrent
        callers share it."""
        if par not in self._groups:
            self._groups[par] = SingleFlight(lambda: self._mon_group(par))
        return await self._groups[par]()

    async def _mon_group(self, par: str) -> list[str]:
        command = self._command("MON", par, self.channels)
        return await self.transport.query(
            command, self._values(par, self.channels), idempotent=True
        )

    async def mon_all_floats(self, par: str) -> list[float]:
        return [parse_number(v) for v in await self.mon_all(par)]

    async def set(self, par: str, ch: int, value: float | str | None = None) -> None:
        await self.transport.query(self._command("SET", par, ch, value), self._ok, idempotent=True)

    async def on(self, ch: int) -> None:
        await self.set("ON", ch)

    async def off(self, ch: int) -> None:
        await self.set("OFF", ch)

    def _values(self, par: str, count: int) -> Callable[[str], list[str]]:
        strict = self.transport.options.strict_formats

        def parse(text: str) -> list[str]:
            return protocol.parse_parameter(text, par, count, self.board, strict)

        return parse

    def _ok(self, text: str) -> None:
        protocol.parse_ok(text, self.board)
