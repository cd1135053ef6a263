"""The stand built from one stand file: `build(path_or_dict)` gives a connected `TestStand`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from bluesky.run_engine import call_in_bluesky_event_loop
from ophyd_async.core import AsyncStatus, DeviceVector, StandardDetector, StandardReadable

from teststand import kinds
from teststand.config import StandConfig, load_stand
from teststand.devices.caen import CaenChannel, PowerDown
from teststand.errors import TeststandError
from teststand.roles import COLDBOX, HV_SUPPLY, LV_SUPPLY, ROLES, SLOT_TEMPERATURE, Role
from teststand.sim.stand import SimStand
from teststand.stand.control import ControlKeeper, release_control
from teststand.stand.served import UNUSED_URL, connect_served, serve_over_ca
from teststand.stand.simulation import start_simulated_stand
from teststand.stand.slot import BiasLimitError, ModuleSlot

T = TypeVar("T")

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
        #: Connected over Channel Access to `teststand ioc` (holding control until closed).
        self.served = False
        #: A served stand's control of the IOC (claimed again after an IOC restart).
        self.control_keeper: ControlKeeper | None = None
        self.instruments: dict[str, StandardReadable] = {}
        for name, instrument in config.instruments.items():
            kind = kinds.get(instrument.kind)
            settings = dict(instrument.settings)
            if kind.data_dir_setting is not None:
                settings.setdefault(kind.data_dir_setting, config.storage.detector_path)
            device: StandardReadable = kind.make_device(urls[name], name, settings)
            for role in kind.roles:  # a device lacking a member of its roles fails here
                ROLES[role].check(device)
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

    def role(self, role: Role[T]) -> dict[str, T]:
        """The instruments playing `role` (by the registry), by name; `RoleMismatch` if one
        lacks a member of the role's protocol."""
        return {
            name: role.check(self.instruments[name])
            for name, instrument in self.config.instruments.items()
            if role.name in kinds.get(instrument.kind).roles
        }

    def _make_slot(self, number: int) -> ModuleSlot:
        slot = self.config.slots[number]
        hv = HV_SUPPLY.check(self.instruments[slot.hv.instrument])
        max_bias = (
            self.config.limits.max_bias.for_sensor(slot.module.sensor) if slot.module else 0.0
        )
        lv_voltage = lv_current = temperature = None
        if slot.lv is not None:
            supply = LV_SUPPLY.check(self.instruments[slot.lv.instrument])
            lv_channel = supply.channels[slot.lv.channel]
            lv_voltage = lv_channel.measured_voltage.get_value
            lv_current = lv_channel.measured_current.get_value
        if slot.temperature is not None:
            box = SLOT_TEMPERATURE.check(self.instruments[slot.temperature.instrument])
            temperature = partial(box.plate_temperature, slot.temperature.channel)
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
        """Write each slot's bias limit (MAXV) and the compliance (ISET) to the supplies, MAXV 0
        on HV channels that bias no module, and PDWN RAMP on every channel (a trip, an interlock
        or a switch-off ramps down at RDW instead of cutting): the hardware's own line of defence.
        Biased channels read their current in the low range (1 nA resolution) when the
        compliance fits in it (a tenth of the supply's maximum): a cold module draws only tens
        of nA."""
        limits = self.config.limits
        biased = {
            (ref.instrument, ref.channel) for ref in (s.hv for s in self.config.slots.values())
        }
        writes: list[Awaitable[Any]] = []
        for slot in self.slots.values():
            channel = slot.hv_channel
            writes.append(channel.max_voltage.set(await slot.max_bias.get_value()))
            writes.append(channel.current_limit.set(limits.compliance))
            kind = self.config.instruments[self.config.slots[slot.number].hv.instrument].kind
            max_current = kinds.get(kind).max_current or 0.0
            if limits.compliance <= LOW_RANGE_FRACTION * max_current:
                writes.append(asyncio.ensure_future(channel.set_low_current_range(True)))
        for name, supply in self.role(HV_SUPPLY).items():
            for number, channel in supply.channels.items():
                if isinstance(channel, CaenChannel):
                    writes.append(channel.power_down.set(PowerDown.RAMP))
                if (name, number) not in biased:
                    writes.append(channel.max_voltage.set(0.0))
        for status in writes:
            await status

    @AsyncStatus.wrap
    async def stage(self) -> None:
        """Stage the stand and its detectors: bluesky stages a device's root (the stand), so a
        detector's stage (a new file, a fresh prepare) happens here."""
        await super().stage()
        await asyncio.gather(*(d.stage() for d in self._detectors()))

    @AsyncStatus.wrap
    async def unstage(self) -> None:
        await asyncio.gather(*(d.unstage() for d in self._detectors()))
        await super().unstage()

    def _detectors(self) -> list[StandardDetector]:
        found: list[Any] = list(self.instruments.values())
        return [d for d in found if isinstance(d, StandardDetector)]

    async def close(self) -> None:
        """Release every instrument (or control of a served stand) and stop the simulators."""
        if self.served and self.config.server is not None:
            self.served = False
            if self.control_keeper is not None:
                self.control_keeper.close()
            await release_control(self.config.server.prefix)
        for device in self.instruments.values():
            close = getattr(device, "close", None)
            if close is not None:
                await close()
        if self.simulators is not None:
            simulators, self.simulators = self.simulators, None
            await asyncio.to_thread(simulators.stop)


async def open_stand(
    source: str | Path | dict[str, Any] | StandConfig, *, mock: bool = False
) -> TestStand:
    """Build the stand, connect every device (or mock it) and write the hardware backstops.

    With `sim: true` (and not mock) the simulators are started first and every URL points at them.
    """
    config = source if isinstance(source, StandConfig) else load_stand(source)
    if config.server is not None and not mock:
        return await _open_served(config)
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


async def _open_served(config: StandConfig) -> TestStand:
    """The stand over Channel Access to the IOC serving `config.server.prefix`."""
    urls = {name: instrument.url or UNUSED_URL for name, instrument in config.instruments.items()}
    stand = TestStand(config, urls)
    serve_over_ca(stand, config.server.prefix if config.server else "")
    stand.control_keeper = await connect_served(stand, config)
    stand.served = True
    return stand


class NoRunEngine(TeststandError, RuntimeError):
    """`build()` was called before any RunEngine existed."""


def build(source: str | Path | dict[str, Any] | StandConfig, *, mock: bool = False) -> TestStand:
    """`open_stand` on the bluesky event loop: make the RunEngine first, then call this."""
    try:
        stand: TestStand = call_in_bluesky_event_loop(open_stand(source, mock=mock))
    except RuntimeError as exc:
        if str(exc) != "Bluesky event loop not running":
            raise
        raise NoRunEngine(
            "build() connects the devices on the RunEngine's event loop, and there is none yet: "
            "create the RunEngine first (RE = RunEngine()), or `await open_stand(...)` in your "
            "own event loop"
        ) from None
    return stand


__all__ = [
    "COLDBOX",
    "BiasLimitError",
    "ModuleSlot",
    "NoRunEngine",
    "TestStand",
    "build",
    "open_stand",
]
