"""Async client of a Lauda chiller (ECO, Proline, Integral XT, Variocool command set)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

from teststand.devices._client import ProtocolClient
from teststand.devices.lauda import protocol
from teststand.errors import InstrumentRefused, ReplyFormatError, TeststandError

T = TypeVar("T")
_ANY_PREFIX = re.compile(r"\s*A[0-9]{3}_")

#: `STAT` flags that end a set point move with an error.
FAULT_FLAGS = frozenset({"error", "alarm", "over_temperature", "low_level"})


class LaudaError(TeststandError):
    """The chiller cannot do what was asked (standby, limits, an alarm during a move)."""


class LaudaClient(ProtocolClient):
    """`await lauda.temperature()`, `await lauda.set_setpoint(-10)`, `await lauda.start()`.

    Commands end in CR, replies in CRLF (read up to LF), 9600 baud by default. With `address`
    (RS-485) every command carries the prefix `A<nnn>_`; a reply prefixed for another address
    is rejected as garbled.
    """

    def __init__(self, url: str, *, address: int | None = None, name: str = "lauda") -> None:
        super().__init__(url, name=name, write_terminator="CR", read_terminator="LF", baudrate=9600)
        if address is not None and not 0 <= address <= 127:
            raise ValueError(f"Lauda RS-485 address {address} out of range 0..127")
        self.address = address
        self._prefix = "" if address is None else f"A{address:03d}_"
        #: Whether the chiller answers `STAT`; checked on connect (older models know `STATUS`).
        self.has_stat = True

    async def on_open(self) -> None:
        try:
            await self.flags()
        except InstrumentRefused as exc:
            if exc.code != "ERR_3":
                raise
            self.has_stat = False

    # -- the command path -----------------------------------------------------------------------
    async def query(self, command: str, parse: Callable[[str], T]) -> T:
        """Send one command (with the address prefix) and parse its reply."""
        return await self.transport.query(
            self._prefix + command, self._addressed(parse), idempotent=True
        )

    async def command(self, command: str, value: str | None = None) -> None:
        """A write (`OUT_SP_00`, value `-10.00`) or a verb (`START`); the chiller answers OK."""
        text = command if value is None else f"{command}_{value}"
        await self.query(text, protocol.parse_ok)

    def _addressed(self, parse: Callable[[str], T]) -> Callable[[str], T]:
        def checked(text: str) -> T:
            prefix = _ANY_PREFIX.match(text)
            if prefix and prefix[0].strip() != self._prefix:
                raise ReplyFormatError(f"reply for another address: {text!r}")
            return parse(text)

        return checked

    async def number(self, command: str) -> float:
        return await self.query(command, protocol.parse_number)

    async def temperature_reading(self, command: str) -> float:
        """A temperature read (`IN_PV_00`, `IN_SP_04`, …), its format checked, °C."""
        strict = self.transport.options.strict_formats
        return await self.query(command, lambda text: protocol.parse_temperature(text, strict))

    async def integer(self, command: str) -> int:
        return await self.query(command, protocol.parse_integer)

    # -- reads ----------------------------------------------------------------------------------
    async def temperature(self) -> float:
        """Outflow (bath) temperature, °C (`IN_PV_00`)."""
        return await self.temperature_reading("IN_PV_00")

    async def controlled_temperature(self) -> float:
        """The controlled temperature, °C (`IN_PV_01`): bath, Pt100 or external value."""
        return await self.temperature_reading("IN_PV_01")

    async def pump_pressure(self) -> float:
        """Pump pressure, bar (`IN_PV_02`)."""
        return await self.number("IN_PV_02")

    async def external_temperature(self) -> float:
        """External Pt100, °C (`IN_PV_03`; ERR_33 without the sensor)."""
        return await self.temperature_reading("IN_PV_03")

    async def bath_level(self) -> int:
        """Bath level (`IN_PV_05`)."""
        return await self.integer("IN_PV_05")

    async def temperature_fine(self) -> float:
        """Outflow temperature with 0.001 K resolution, °C (`IN_PV_10`)."""
        return await self.integer("IN_PV_10") / 1000

    async def setpoint(self) -> float:
        """Set point, °C (`IN_SP_00`)."""
        return await self.temperature_reading("IN_SP_00")

    async def pump_level(self) -> int:
        return await self.integer("IN_SP_01")

    async def cooling_mode(self) -> int:
        """0 off, 1 on, 2 auto (`IN_SP_02`)."""
        return await self.integer("IN_SP_02")

    async def overtemperature(self) -> float:
        """Over-temperature cut-off, °C (`IN_SP_03`)."""
        return await self.temperature_reading("IN_SP_03")

    async def upper_limit(self) -> float:
        """TiH, the highest set point allowed, °C (`IN_SP_04`)."""
        return await self.temperature_reading("IN_SP_04")

    async def lower_limit(self) -> float:
        """TiL, the lowest set point allowed, °C (`IN_SP_05`)."""
        return await self.temperature_reading("IN_SP_05")

    async def keylock(self) -> bool:
        return await self.integer("IN_MODE_00") == 1

    async def control_source(self) -> int:
        """0 internal, 1 Pt100, 2 analogue, 3 serial (`IN_MODE_01`)."""
        return await self.integer("IN_MODE_01")

    async def running(self) -> bool:
        """True while running, False in standby (`IN_MODE_02`: 0 running, 1 standby)."""
        return await self.integer("IN_MODE_02") == 0

    async def model(self) -> str:
        return await self.query("TYPE", protocol.parse_text)

    async def version(self) -> str:
        return await self.query("VERSION_R", protocol.parse_text)

    async def error(self) -> bool:
        """`STATUS`: True when the chiller reports an error (-1)."""
        return await self.integer("STATUS") != 0

    async def flags(self) -> frozenset[str]:
        """Raised status flags (names in `protocol.STAT_FLAGS`), from `STAT`, or `error` alone
        from `STATUS` on a chiller without `STAT`."""
        if not self.has_stat:
            return frozenset({"error"}) if await self.error() else frozenset()
        return await self.query("STAT", protocol.parse_stat)

    # -- writes ---------------------------------------------------------------------------------
    async def set_setpoint(self, value: float) -> None:
        await self.command("OUT_SP_00", self._temperature(value))

    async def set_pump_level(self, level: int) -> None:
        await self.command("OUT_SP_01", str(int(level)))

    async def set_cooling_mode(self, mode: int) -> None:
        await self.command("OUT_SP_02", str(int(mode)))

    async def set_upper_limit(self, value: float) -> None:
        await self.command("OUT_SP_04", self._temperature(value))

    async def set_lower_limit(self, value: float) -> None:
        await self.command("OUT_SP_05", self._temperature(value))

    async def set_safe_setpoint(self, value: float) -> None:
        """The Safe Mode set point (`OUT_SP_07`), held after a lost link when Safe Mode is on."""
        await self.command("OUT_SP_07", self._temperature(value))

    async def safe_setpoint(self) -> float:
        return await self.number("IN_SP_07")

    async def set_communication_timeout(self, seconds: int) -> None:
        """The communication watchdog (`OUT_SP_08`): with no command for `seconds` the chiller
        stops, or enters Safe Mode; 0 switches it off. Writing it clears its alarm."""
        if not 0 <= seconds <= 3600:
            raise LaudaError(f"{self.name}: timeout {seconds} s: give 0..3600 s (0: off)")
        await self.command("OUT_SP_08", str(int(seconds)))

    async def communication_timeout(self) -> int:
        return await self.integer("IN_SP_08")

    async def start(self) -> None:
        await self.command("START")

    async def stop(self) -> None:
        """Standby: the pump and the control stop."""
        await self.command("STOP")

    def _temperature(self, value: float) -> str:
        try:
            return protocol.format_temperature(value)
        except ValueError as exc:
            raise LaudaError(f"{self.name}: {exc}; give a temperature in °C") from None
