"""The stand built from one stand file: `build(path_or_dict)` gives a connected `TestStand`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

from bluesky.run_engine import call_in_bluesky_event_loop
from ophyd_async.core import DeviceVector, StandardReadable

from teststand.config import HARDWARE, InstrumentConfig, StandConfig, load_stand
from teststand.devices.caen import CaenHV
from teststand.devices.caen.client import Dialect
from teststand.devices.coldbox import ColdBox
from teststand.devices.hmp4040 import HMP4040
from teststand.devices.keithley import Keithley2410
from teststand.devices.lauda import LaudaChiller
from teststand.devices.slot import ModuleSlot
from teststand.sim.stand import SimStand
from teststand.stand.simulation import start_simulated_stand


def _caen(url: str, settings: dict[str, Any], name: str, kind: str) -> StandardReadable:
    dialect: Dialect = "803x" if kind == "caen-dt8033" else "14xx"
    return CaenHV(url, dialect=dialect, board=int(settings.get("board", 0)), name=name)


DEVICE_FACTORIES: dict[str, Callable[[str, dict[str, Any], str, str], StandardReadable]] = {
    "caen-dt8033": _caen,
    "caen-n1470": _caen,
    "lauda": lambda url, settings, name, kind: LaudaChiller(url, name=name, **settings),
    "coldbox": lambda url, settings, name, kind: ColdBox(url, name=name, **settings),
    "keithley2410": lambda url, settings, name, kind: Keithley2410(url, name=name, **settings),
    "hmp4040": lambda url, settings, name, kind: HMP4040(url, name=name, **settings),
}

#: The CAEN low current range's full scale, as a fraction of the supply's maximum current.
LOW_RANGE_FRACTION = 0.1


class TestStand(StandardReadable):
    """Every instrument of the stand by its name in the stand file, and `slots[n]` by number."""

    __test__ = False  # not a pytest test class

    def __init__(
        self, config: StandConfig, urls: dict[str, str], simulators: SimStand | None = None
    ) -> None:
        self.config = config
        self.simulators = simulators
        self.instruments: dict[str, StandardReadable] = {}
        for name, instrument in config.instruments.items():
            device = _make_device(name, instrument, urls[name])
            self.instruments[name] = device
            setattr(self, name, device)
        slots = {n: self._make_slot(n) for n in sorted(config.slots)}
        with self.add_children_as_readables():
            self.slots = DeviceVector(slots)
        super().__init__(name="stand")

    def set_name(self, name: str, *, child_name_separator: str | None = None) -> None:
        """Name the stand, but keep every instrument and slot under its own short name
        (`hv-channels-0`, `slot3`), as the stand file and the plans call them."""
        super().set_name(name, child_name_separator=child_name_separator)
        for instrument, device in getattr(self, "instruments", {}).items():
            device.set_name(instrument)
        for number, slot in getattr(self, "slots", {}).items():
            slot.set_name(f"slot{number}")

    def _make_slot(self, number: int) -> ModuleSlot:
        slot = self.config.slots[number]
        hv = self.instruments[slot.hv.instrument]
        assert isinstance(hv, CaenHV)
        max_bias = (
            self.config.limits.max_bias.for_sensor(slot.module.sensor) if slot.module else 0.0
        )
        lv_voltage = lv_current = temperature = None
        if slot.lv is not None:
            supply = self.instruments[slot.lv.instrument]
            assert isinstance(supply, HMP4040)
            lv_channel = supply.channels[slot.lv.channel]
            lv_voltage = lv_channel.measured_voltage.get_value
            lv_current = lv_channel.measured_current.get_value
        if slot.temperature is not None:
            box = self.instruments[slot.temperature.instrument]
            assert isinstance(box, ColdBox)
            temperature = partial(box.client.plate_temperature, slot.temperature.channel)
        return ModuleSlot(
            number,
            hv.channels[slot.hv.channel],
            slot.module,
            max_bias,
            lv_voltage=lv_voltage,
            lv_current=lv_current,
            temperature=temperature,
        )

    async def apply_backstops(self) -> None:
        """Write each slot's bias limit (MAXV) and the compliance (ISET) to the supplies, and
        MAXV 0 on HV channels that bias no module: the hardware's own line of defence. Biased
        channels read their current in the low range (1 nA resolution) when the compliance fits
        in it (a tenth of the supply's maximum): a cold module draws only tens of nA."""
        limits = self.config.limits
        biased: set[tuple[str, int]] = set()
        writes: list[Awaitable[Any]] = []
        for slot in self.slots.values():
            channel = slot.hv_channel
            biased.add((channel.client.name, channel.channel))
            writes.append(channel.max_voltage.set(await slot.max_bias.get_value()))
            writes.append(channel.current_limit.set(limits.compliance))
            kind = self.config.instruments[self.config.slots[slot.number].hv.instrument].kind
            if limits.compliance <= LOW_RANGE_FRACTION * (HARDWARE[kind].max_current or 0.0):
                low = channel.client.set("IMRANGE", channel.channel, "LOW")
                writes.append(asyncio.ensure_future(low))
        for device in self.instruments.values():
            if isinstance(device, CaenHV):
                for channel in device.channels.values():
                    if (channel.client.name, channel.channel) not in biased:
                        writes.append(channel.max_voltage.set(0.0))
        for status in writes:
            await status

    async def close(self) -> None:
        """Release every instrument and stop the simulators of a simulated stand."""
        for device in self.instruments.values():
            client = getattr(device, "client", None)
            if client is not None:
                await client.close()
        if self.simulators is not None:
            simulators, self.simulators = self.simulators, None
            await asyncio.to_thread(simulators.stop)


def _make_device(name: str, instrument: InstrumentConfig, url: str) -> StandardReadable:
    return DEVICE_FACTORIES[instrument.kind](url, dict(instrument.settings), name, instrument.kind)


async def open_stand(
    source: str | Path | dict[str, Any] | StandConfig, *, mock: bool = False
) -> TestStand:
    """Build the stand, connect every device (or mock it) and write the hardware backstops.

    With `sim: true` (and not mock) the simulators are started first and every URL points at them.
    """
    config = source if isinstance(source, StandConfig) else load_stand(source)
    simulators = None
    urls = {name: instrument.url or "" for name, instrument in config.instruments.items()}
    if config.sim and not mock:
        simulators, urls = await asyncio.to_thread(start_simulated_stand, config)
    stand = TestStand(config, urls, simulators)
    try:
        await stand.connect(mock=mock)
        if not mock:
            await stand.apply_backstops()
    except BaseException:
        await stand.close()
        raise
    return stand


def build(source: str | Path | dict[str, Any] | StandConfig, *, mock: bool = False) -> TestStand:
    """`open_stand` on the bluesky event loop: make the RunEngine first, then call this."""
    stand: TestStand = call_in_bluesky_event_loop(open_stand(source, mock=mock))
    return stand
