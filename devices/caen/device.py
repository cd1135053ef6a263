"""ophyd-async devices of a CAEN HV supply: one `CaenChannel` per channel in a `DeviceVector`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cached_property

from ophyd_async.core import (
    AsyncStatus,
    DeviceMock,
    DeviceVector,
    MovableLogic,
    SignalRW,
    StandardMovable,
    StandardReadable,
    StrictEnum,
    TimeoutCalculator,
    callback_on_mock_put,
    default_mock_class,
    set_mock_value,
)
from ophyd_async.core import StandardReadableFormat as Format

from teststand.devices._backend import RampInProgress, client_signal_r, client_signal_rw
from teststand.devices._base import InstrumentDevice
from teststand.devices.caen.client import (
    CaenClient,
    CaenError,
    CaenRampError,
    ChannelStatus,
    Dialect,
    decode_status,
)
from teststand.roles import HVChannel, HVSupply

MICRO = 1e-6


class PowerDown(StrictEnum):
    RAMP = "RAMP"
    KILL = "KILL"


@dataclass
class CaenMoveLogic(MovableLogic[float]):
    """Ramp to a voltage: done within `tolerance` of it; a trip or switch-off fails the move."""

    channel: CaenChannel
    tolerance: float = 2.0
    poll: float = 0.2  # the longest wait between two checks; the first ones come sooner
    margin: float = 10.0

    async def check_move(self, new_position: float) -> None:
        limit = await self.channel.max_voltage.get_value()
        if not 0 <= new_position <= limit:
            raise CaenError(
                f"{self.channel.name}: {new_position} V is outside 0..{limit} V (MAXV); give a "
                "magnitude within the channel's limit"
            )

    async def calculate_timeout(self, old_position: float, new_position: float) -> float:
        rising = new_position > old_position
        rate = await (self.channel.rate_up if rising else self.channel.rate_down).get_value()
        return abs(new_position - old_position) / max(float(rate), 1e-3) * 1.2 + self.margin

    async def move(self, new_position: float, timeout: TimeoutCalculator) -> None:
        with self.channel.ramp_in_progress.held():
            await self._ramp(new_position, timeout)

    async def _ramp(self, new_position: float, timeout: TimeoutCalculator) -> None:
        channel = self.channel
        status = await channel.read_status()
        if not status.on:
            if new_position == 0:  # the safe state: an OFF channel at VSET 0 has arrived
                await self.setpoint.set(0.0)
                return
            if status.faults:
                raise CaenRampError(
                    f"{channel.name} tripped ({', '.join(sorted(status.faults))}) and is off: "
                    "find the cause (current limit, module), then switch it on (clears the trip)"
                )
            raise CaenRampError(f"{channel.name} is OFF: switch it on before setting a voltage")
        await self.setpoint.set(new_position)
        deadline = time.monotonic() + (timeout() or float("inf"))
        wait = self.poll / 16  # short steps arrive within a few checks
        while True:
            status = await channel.read_status()
            if status.faults or not status.on:
                problem = ", ".join(sorted(status.faults)) or "switched off"
                raise CaenRampError(f"{channel.name}: ramp to {new_position} V failed: {problem}")
            voltage = await self.readback.get_value(cached=False)  # not a monitor's last poll
            if abs(voltage - new_position) < self.tolerance and not status.ramping:
                return
            if time.monotonic() > deadline:
                raise CaenRampError(
                    f"{channel.name}: ramp to {new_position} V timed out at {voltage} V; check "
                    "the ramp rate, the current limit and the load"
                )
            await asyncio.sleep(wait)
            wait = min(2 * wait, self.poll)

    async def stop(self) -> None:
        """Hold the present voltage."""
        await self.setpoint.set(await self.readback.get_value(cached=False))


class CaenChannelMock(DeviceMock["CaenChannel"]):
    """A dry-run channel: switched on, limits wide open, ramps arrive at once."""

    async def connect(self, device: CaenChannel) -> None:
        set_mock_value(device.max_voltage, 1e4)
        set_mock_value(device.status_word, 1)
        set_mock_value(device.status, "ON")
        callback_on_mock_put(device.setpoint, lambda v: set_mock_value(device.voltage, v))


@default_mock_class(CaenChannelMock)
class CaenChannel(StandardReadable, StandardMovable[float]):
    """One HV channel: readbacks, configuration, and a ramp as its move."""

    def __init__(self, client: CaenClient, channel: int, name: str = "") -> None:
        self.client = client
        self.channel = channel
        #: The ramp in progress, if any: `zero()` cancels it before writing 0 V.
        self.ramp_in_progress = RampInProgress()
        source = f"{client.url}#CH{channel}"

        def group(par: str, scale: float = 1.0) -> Callable[[], Awaitable[float]]:
            async def read() -> float:
                return (await client.mon_all_floats(par))[channel] * scale

            return read

        def write(par: str, scale: float = 1.0) -> Callable[[float], Awaitable[None]]:
            async def put(value: float) -> None:
                await client.set(par, channel, round(value / scale, 4))

            return put

        async def ramp_down_read() -> float:
            return await group(client.ramp_down_name)()

        async def ramp_down_write(value: float) -> None:
            await client.set(client.ramp_down_name, channel, value)

        async def power_down_read() -> PowerDown:
            return PowerDown((await client.mon_all("PDWN"))[channel])

        async def power_down_write(value: PowerDown) -> None:
            await client.set("PDWN", channel, PowerDown(value).value)

        async def polarity_read() -> str:
            return (await client.mon_all("POL"))[channel]

        async def status_word_read() -> int:
            return int((await client.mon_all_floats("STAT"))[channel])

        async def status_read() -> str:
            return str(decode_status(await status_word_read(), client.dialect))

        with self.add_children_as_readables(Format.HINTED_UNCACHED_SIGNAL):
            self.voltage = client_signal_r(
                float, group("VMON"), source=f"{source}:VMON", units="V", precision=1
            )
        with self.add_children_as_readables(Format.UNCACHED_SIGNAL):
            self.current = client_signal_r(
                float, group("IMON", MICRO), source=f"{source}:IMON", units="A"
            )
            self.status = client_signal_r(str, status_read, source=f"{source}:STAT")
        with self.add_children_as_readables(Format.CONFIG_SIGNAL):
            self.rate_up = client_signal_rw(
                float, group("RUP"), write("RUP"), source=f"{source}:RUP", units="V/s"
            )
            self.rate_down = client_signal_rw(
                float, ramp_down_read, ramp_down_write, source=f"{source}:RDW", units="V/s"
            )
            self.current_limit = client_signal_rw(
                float,
                group("ISET", MICRO),
                write("ISET", MICRO),
                source=f"{source}:ISET",
                units="A",
            )
            self.trip_time = client_signal_rw(
                float, group("TRIP"), write("TRIP"), source=f"{source}:TRIP", units="s"
            )
            self.power_down = client_signal_rw(
                PowerDown, power_down_read, power_down_write, source=f"{source}:PDWN"
            )
            self.max_voltage = client_signal_rw(
                float, group("MAXV"), write("MAXV"), source=f"{source}:MAXV", units="V"
            )
            self.polarity = client_signal_r(str, polarity_read, source=f"{source}:POL")

        async def switched_on() -> bool:
            return decode_status(await status_word_read(), client.dialect).on

        async def switch(on: bool) -> None:
            await (client.on if on else client.off)(channel)

        self.status_word = client_signal_r(int, status_word_read, source=f"{source}:STAT")
        #: ON/OFF as a signal, so that a dry run (mock) switches a soft value instead.
        self.switched_on = client_signal_rw(bool, switched_on, switch, source=f"{source}:ON")
        self.setpoint: SignalRW[float] = client_signal_rw(
            float, group("VSET"), write("VSET"), source=f"{source}:VSET", units="V"
        )
        super().__init__(name=name)

    @cached_property
    def movable_logic(self) -> CaenMoveLogic:
        return CaenMoveLogic(setpoint=self.setpoint, readback=self.voltage, channel=self)

    async def read_status(self) -> ChannelStatus:
        return decode_status(await self.status_word.get_value(cached=False), self.client.dialect)

    async def check_voltage(self, voltage: float) -> None:
        """Raise `CaenError` if `voltage` V is outside 0..MAXV."""
        await self.movable_logic.check_move(voltage)

    async def ramp_timeout(self, old: float, new: float) -> float:
        """Seconds a ramp from `old` to `new` V may take at the channel's rates, with margin."""
        return await self.movable_logic.calculate_timeout(old, new)

    async def ramp_to(self, voltage: float, timeout: float | None) -> None:
        """Ramp to `voltage` V without the per-move checks of `set` and wait until it is within
        tolerance; `CaenRampError` on a trip, a switch-off or after `timeout` s."""
        await self.movable_logic.move(voltage, lambda: timeout)

    async def set_low_current_range(self, low: bool) -> None:
        """IMRANGE LOW (1 nA resolution, a tenth of the full scale) or HIGH."""
        await self.client.set("IMRANGE", self.channel, "LOW" if low else "HIGH")

    async def zero(self) -> None:
        """Cancel the ramp in progress (a suspended plan's step would write its voltage again)
        and write VSET 0; the supply ramps down at its RDW rate. Works on a channel that is off."""
        await self.ramp_in_progress.cancel()
        await self.setpoint.set(0.0)

    @AsyncStatus.wrap
    async def on(self) -> None:
        await self.switched_on.set(True)

    @AsyncStatus.wrap
    async def off(self) -> None:
        await self.switched_on.set(False)


class CaenHV(InstrumentDevice[CaenClient]):
    """A CAEN HV supply: `channels[i]` are its channels; reads use the group command."""

    def __init__(
        self,
        url_or_client: str | CaenClient,
        dialect: Dialect = "803x",
        board: int = 0,
        name: str = "",
    ) -> None:
        client = self.adopt(
            url_or_client,
            lambda url: CaenClient(url, dialect=dialect, board=board, name=name or "caen"),
        )
        with self.add_children_as_readables():
            self.channels = DeviceVector(
                {i: CaenChannel(client, i) for i in range(client.channels)}
            )
        super().__init__(name=name)


def _roles(supply: CaenHV, channel: CaenChannel) -> tuple[HVSupply, HVChannel]:
    """The roles this module's devices play (checked by the type checker)."""
    return supply, channel


__all__ = ["CaenChannel", "CaenHV", "PowerDown"]
