"""Async client of a coldbox speaking the Tessie-like line protocol (sim/README.md)."""

from __future__ import annotations

import math

from teststand.devices._backend import SingleFlight
from teststand.devices._client import ProtocolClient
from teststand.devices.coldbox import protocol
from teststand.devices.coldbox.protocol import CHANNELS, Status
from teststand.errors import TeststandError

#: Magnus coefficients (Sensirion), valid for -45..60 °C.
MAGNUS_B = 17.62
MAGNUS_C = 243.12
#: The humidity reading's resolution is 0.01 %; a reading of 0.00 is taken as half of that, so
#: the dew point computed from it is an upper bound and the margin errs on the safe side.
MIN_HUMIDITY = 0.005
SETPOINT_RANGE = (-40.0, 40.0)


class ColdBoxError(TeststandError):
    """The coldbox cannot do what was asked (TECs off, lid open, target out of range)."""


def dew_point(temperature: float, humidity: float) -> float:
    """Dew point, °C, of air at `temperature` (°C) and relative `humidity` (%), by the Magnus
    formula; humidity is clamped to MIN_HUMIDITY..100 %."""
    rh = min(max(humidity, MIN_HUMIDITY), 100.0)
    gamma = math.log(rh / 100.0) + MAGNUS_B * temperature / (MAGNUS_C + temperature)
    return MAGNUS_C * gamma / (MAGNUS_B - gamma)


class ColdBoxClient(ProtocolClient):
    """`await box.status()` reads everything in one round trip (concurrent callers share it);
    `set_setpoint`, `set_valve`, `power` write. TEC channels are 1..8, 0 means all."""

    def __init__(self, url: str, *, name: str = "coldbox") -> None:
        super().__init__(url, name=name, terminator="CRLF", baudrate=9600)
        self.status = SingleFlight(self._status)

    async def _status(self) -> Status:
        return await self.transport.query("get Status", protocol.parse_status, idempotent=True)

    async def get(self, name: str, channel: int | None = None) -> str:
        """One `get NAME [CHANNEL]` value, as text."""
        command = f"get {name}" if channel is None else f"get {name} {self._channel(channel)}"
        return await self.transport.query(
            command, lambda text: protocol.parse_value(text, name), idempotent=True
        )

    async def get_number(self, name: str, channel: int | None = None) -> float:
        """One numeric `get NAME [CHANNEL]`, its format checked (a bad reply is retried)."""
        command = f"get {name}" if channel is None else f"get {name} {self._channel(channel)}"
        return await self.transport.query(command, protocol.number_parser(name), idempotent=True)

    async def plate_temperature(self, channel: int) -> float:
        """Plate temperature of TEC `channel` (1..8), or the mean of all with 0, °C."""
        plates = (await self.status()).plates
        return sum(plates) / CHANNELS if self._channel(channel) == 0 else plates[channel - 1]

    async def dew_point(self) -> float:
        """Dew point of the box air, °C, computed from its temperature and humidity."""
        status = await self.status()
        return dew_point(status.air, status.humidity)

    async def set_setpoint(self, value: float, channel: int = 0) -> None:
        low, high = SETPOINT_RANGE
        if not low <= value <= high:
            raise ColdBoxError(
                f"{self.name}: TEC set point {value} °C is outside {low:g}..{high:g} °C; "
                "give a target inside the box's range"
            )
        await self._command(f"set Temp_Set {value:.2f} {self._channel(channel)}")

    async def set_valve(self, on: bool) -> None:
        """Dry-air flush on or off (`valve0`)."""
        await self._command(f"set valve0 {'on' if on else 'off'}")

    async def power(self, on: bool, channel: int = 0) -> None:
        """TEC power on or off (`cmd Power_On` / `cmd Power_Off`)."""
        await self._command(f"cmd {'Power_On' if on else 'Power_Off'} {self._channel(channel)}")

    async def _command(self, command: str) -> None:
        await self.transport.query(command, protocol.parse_ok, idempotent=True)

    def _channel(self, channel: int) -> int:
        if not 0 <= channel <= CHANNELS:
            raise ValueError(f"TEC channel {channel} out of range 0..{CHANNELS} (0: all)")
        return channel
