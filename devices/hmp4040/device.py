"""`HMP4040`: an ophyd-async R&S low-voltage supply, one `HMP4040Channel` per output."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from ophyd_async.core import (
    DeviceMock,
    DeviceVector,
    StandardReadable,
    callback_on_mock_put,
    default_mock_class,
    set_mock_value,
)
from ophyd_async.core import StandardReadableFormat as Format

from teststand.devices._backend import client_signal_r, client_signal_rw
from teststand.devices._base import InstrumentDevice, SwitchedOutput
from teststand.devices.hmp4040.client import ChannelSettings, HMPClient, Measurement
from teststand.roles import LVOutput, LVSupply

T = TypeVar("T")


class HMP4040ChannelMock(DeviceMock["HMP4040Channel"]):
    """A dry-run channel: it measures what it is set to."""

    async def connect(self, device: HMP4040Channel) -> None:
        callback_on_mock_put(device.voltage, lambda v: set_mock_value(device.measured_voltage, v))


@default_mock_class(HMP4040ChannelMock)
class HMP4040Channel(SwitchedOutput, StandardReadable):
    """One output: set voltage and current limit (configuration), measured voltage and current,
    and `output` (armed with `OUTP:SEL`, or `on()`; it delivers while the supply is on)."""

    def __init__(self, client: HMPClient, channel: int, name: str = "") -> None:
        self.client = client
        self.channel = channel
        source = f"{client.url}#CH{channel}"

        def measured(pick: Callable[[Measurement], float]) -> Callable[[], Awaitable[float]]:
            async def read() -> float:
                return pick(await client.measure(channel))

            return read

        def setting(pick: Callable[[ChannelSettings], T]) -> Callable[[], Awaitable[T]]:
            async def read() -> T:
                return pick(await client.settings(channel))

            return read

        def write(put: Callable[[int, T], Awaitable[None]]) -> Callable[[T], Awaitable[None]]:
            async def send(value: T) -> None:
                await put(channel, value)

            return send

        # Uncached: staged signals would be polled by the backend all through a run.
        with self.add_children_as_readables(Format.HINTED_UNCACHED_SIGNAL):
            self.measured_voltage = client_signal_r(
                float, measured(lambda m: m.voltage), source=f"{source}:MEAS:VOLT", units="V"
            )
            self.measured_current = client_signal_r(
                float, measured(lambda m: m.current), source=f"{source}:MEAS:CURR", units="A"
            )
        with self.add_children_as_readables(Format.CONFIG_SIGNAL):
            self.voltage = client_signal_rw(
                float,
                setting(lambda s: s.voltage),
                write(client.set_voltage),
                source=f"{source}:VOLT",
                units="V",
            )
            self.current_limit = client_signal_rw(
                float,
                setting(lambda s: s.current_limit),
                write(client.set_current_limit),
                source=f"{source}:CURR",
                units="A",
            )
            self.output = client_signal_rw(
                bool, setting(lambda s: s.armed), write(client.set_armed), source=f"{source}:OUTP"
            )
        super().__init__(name=name)


class HMP4040(SwitchedOutput, InstrumentDevice[HMPClient]):
    """An R&S HMP4040 (or, with `channels=3`, an HMP2030): `channels[1..n]` and the master
    `output` (`OUTP:GEN`): `on()` makes the armed channels deliver."""

    def __init__(self, url_or_client: str | HMPClient, channels: int = 4, name: str = "") -> None:
        client = self.adopt(
            url_or_client, lambda url: HMPClient(url, channels=channels, name=name or "hmp4040")
        )
        with self.add_children_as_readables():
            self.channels = DeviceVector({n: HMP4040Channel(client, n) for n in client.numbers})
        with self.add_children_as_readables(Format.CONFIG_SIGNAL):
            self.output = client_signal_rw(
                bool, client.master, client.set_master, source=f"{client.url}#OUTP:GEN"
            )
        super().__init__(name=name)


def _roles(supply: HMP4040, channel: HMP4040Channel) -> tuple[LVSupply, LVOutput]:
    """The roles this module's devices play (checked by the type checker)."""
    return supply, channel


__all__ = ["HMP4040", "HMP4040Channel"]
