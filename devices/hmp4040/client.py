"""Async client of a Rohde & Schwarz HMP4040 / HMP2030 / HMP2020 low-voltage supply (SCPI)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from teststand.devices._backend import SingleFlight
from teststand.devices.hmp4040 import protocol

# Re-exported: the device and the package import them from here.
from teststand.devices.hmp4040.protocol import ChannelSettings as ChannelSettings
from teststand.devices.hmp4040.protocol import Measurement as Measurement
from teststand.devices.scpi import ScpiClient, parse_bool
from teststand.errors import TeststandError

T = TypeVar("T")
#: Largest set voltage (V) and current limit (A) of the family.
MAX_VOLTAGE = 32.0
MAX_CURRENT = 10.0


class HMPError(TeststandError):
    """An HMP supply request that cannot be carried out as asked."""


class HMPValueError(HMPError, ValueError):
    """A value or channel the supply does not have; refused before anything is sent."""


class HMPClient(ScpiClient):
    """`await hmp.measure(n)`, `settings(n)`, `set_voltage(n, v)`, `set_master(on)`, ….

    Channels are numbered from 1 as on the front panel. Every channel command selects its channel
    (`INST:NSEL n`) under the client's lock, so a concurrent caller cannot slip a selection in
    between, and the reply starts with `INST:NSEL?` to prove the selection took effect.
    """

    def __init__(self, url: str, *, channels: int = 4, name: str = "hmp4040") -> None:
        if channels not in (2, 3, 4):
            raise HMPValueError(f"an HMP supply has 2, 3 or 4 channels, not {channels}")
        super().__init__(url, name=name, terminator="LF", baudrate=9600)
        self.channels = channels
        self._measure = {n: SingleFlight(self._measurer(n)) for n in self.numbers}
        self._settings = {n: SingleFlight(self._settings_reader(n)) for n in self.numbers}

    @property
    def numbers(self) -> range:
        return range(1, self.channels + 1)

    async def on_open(self) -> None:
        identity = await self.identify()
        found = re.fullmatch(r"HMP[0-9]{2}([0-9])0", identity.model.strip())
        if found is None or int(found[1]) != self.channels:
            raise HMPError(
                f"{self.name} ({self.url}) identifies as {identity.manufacturer} "
                f"{identity.model!r}, not a {self.channels}-channel HMP supply; give `channels` "
                "to match the model (HMP4040: 4, HMP2030: 3, HMP2020: 2)"
            )
        await self.discard_stale_errors()

    def check_channel(self, channel: int) -> None:
        if channel not in self.numbers:
            raise HMPValueError(
                f"{self.name} has channels {self.numbers.start}..{self.numbers.stop - 1}, "
                f"not {channel}"
            )

    # -- selected-channel exchanges ------------------------------------------------------------
    async def channel_query(
        self, channel: int, queries: Sequence[str], parse: Callable[[list[str]], T]
    ) -> T:
        """Select `channel`, send `queries` on one line and parse their replies, atomically."""
        self.check_channel(channel)

        def parse_selected(text: str) -> tuple[int, T | None]:
            return protocol.parse_selected(text, len(queries), channel, parse)

        async with self.lock:
            await self.send(f"INST:NSEL {channel}")
            line = ";".join((":INST:NSEL?", *queries))
            selected, value = await self.query(line, parse_selected)
            if value is None:
                await self.raise_queued(f"INST:NSEL {channel}")
                raise HMPError(
                    f"{self.name}: channel {channel} could not be selected (channel {selected} "
                    "is); check that the supply is under remote control"
                )
        return value

    async def channel_configure(self, channel: int, command: str) -> None:
        """Select `channel`, send a setting for it, and drain the error queue, atomically."""
        self.check_channel(channel)
        async with self.lock:
            await self.send(f":INST:NSEL {channel};:{command}")
            await self.raise_queued(f"{command!r} on channel {channel}")

    # -- readings and settings -----------------------------------------------------------------
    async def measure(self, channel: int) -> Measurement:
        """Measured voltage and current of `channel`; concurrent callers share one exchange."""
        self.check_channel(channel)
        return await self._measure[channel]()

    def _measurer(self, channel: int) -> Callable[[], Awaitable[Measurement]]:
        async def fetch() -> Measurement:
            strict = self.transport.options.strict_formats
            return await self.channel_query(
                channel,
                (":MEAS:VOLT?", ":MEAS:CURR?"),
                lambda replies: protocol.parse_measurement(replies, strict),
            )

        return fetch

    async def settings(self, channel: int) -> ChannelSettings:
        """Set voltage, current limit and arming of `channel`; concurrent callers share it."""
        self.check_channel(channel)
        return await self._settings[channel]()

    def _settings_reader(self, channel: int) -> Callable[[], Awaitable[ChannelSettings]]:
        async def fetch() -> ChannelSettings:
            strict = self.transport.options.strict_formats
            return await self.channel_query(
                channel,
                (":VOLT?", ":CURR?", ":OUTP:SEL?"),
                lambda replies: protocol.parse_settings(replies, strict),
            )

        return fetch

    async def set_voltage(self, channel: int, volts: float) -> None:
        self._check_range("set voltage", volts, MAX_VOLTAGE, "V")
        await self.channel_configure(channel, f"VOLT {volts:.4f}")

    async def set_current_limit(self, channel: int, amps: float) -> None:
        self._check_range("current limit", amps, MAX_CURRENT, "A")
        await self.channel_configure(channel, f"CURR {amps:.4f}")

    async def set_armed(self, channel: int, on: bool) -> None:
        """Arm (`OUTP:SEL 1`) or disarm a channel; it delivers while the master output is on."""
        await self.channel_configure(channel, f"OUTP:SEL {int(on)}")

    async def master(self) -> bool:
        return await self.query(":OUTP:GEN?", parse_bool)

    async def set_master(self, on: bool) -> None:
        """The master output switch (`OUTP:GEN`): armed channels deliver while it is on."""
        await self.configure(f":OUTP:GEN {int(on)}")

    def _check_range(self, what: str, value: float, top: float, units: str) -> None:
        if not 0 <= value <= top:
            raise HMPValueError(f"{self.name}: {what} {value} {units} is outside 0..{top} {units}")
