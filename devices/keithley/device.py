"""`Keithley2410`: an ophyd-async SMU sourcing voltage and measuring current, stepped moves."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TypeVar

from ophyd_async.core import (
    AsyncStatus,
    DeviceMock,
    MovableLogic,
    SignalRW,
    StandardMovable,
    TimeoutCalculator,
    callback_on_mock_put,
    default_mock_class,
    set_mock_value,
    soft_signal_rw,
)
from ophyd_async.core import StandardReadableFormat as Format

from teststand.devices._backend import client_signal_r, client_signal_rw
from teststand.devices._base import InstrumentDevice, SwitchedOutput
from teststand.devices.keithley.client import (
    Dialect,
    KeithleyClient,
    KeithleyError,
    Settings,
    Terminals,
)
from teststand.devices.keithley.protocol import Reading
from teststand.roles import SourceMeter

log = logging.getLogger("teststand.devices")
T = TypeVar("T")
#: Seconds a single step may take to arrive (a write and a reading at 9600 baud, NPLC up to 10).
STEP_ALLOWANCE = 1.0


@dataclass
class KeithleyMoveLogic(MovableLogic[float]):
    """Source a voltage, in steps of `step` V with `step_pause` s between them when `step` > 0.

    Each step is done when a reading is within `tolerance` of it. A reading in compliance ends
    the move there (no higher step is applied): the load takes no more, and `in_compliance`
    says so. A refused level (LOCAL control, beyond the range) raises the instrument's errors.
    """

    smu: Keithley2410
    poll: float = 0.05
    margin: float = 5.0

    async def check_target(self, new_position: float) -> None:
        """The value's own check (a level may be written before the output is on)."""
        self.smu.client.check_level(new_position)

    async def check_move(self, new_position: float) -> None:
        await self.check_target(new_position)
        if not await self.smu.output.get_value():
            raise KeithleyError(f"{self.smu.name}: the output is off; switch it on (on()) first")

    async def _plan(self, old: float, new: float) -> list[float]:
        step = abs(await self.smu.step.get_value())
        count = max(1, math.ceil(abs(new - old) / step - 1e-9)) if step > 0 else 1
        return [old + (new - old) * (i + 1) / count for i in range(count)]

    async def calculate_timeout(self, old_position: float, new_position: float) -> float:
        steps = len(await self._plan(old_position, new_position))
        pause = await self.smu.step_pause.get_value()
        return steps * (STEP_ALLOWANCE + float(pause)) + self.margin

    async def move(self, new_position: float, timeout: TimeoutCalculator) -> None:
        smu = self.smu
        # Steps start at the source level, which in compliance is above the measured voltage.
        stepped = await smu.step.get_value() != 0
        start = await self.setpoint.get_value() if stepped else new_position
        levels = await self._plan(start, new_position)
        pause = await smu.step_pause.get_value()
        for index, level in enumerate(levels):
            if index:
                await asyncio.sleep(pause)
            await self.setpoint.set(level)
            reading = await self._arrive(level, timeout)
            if reading.in_compliance:
                log.warning(
                    "%s: in compliance at %.4g V, %.4g A; the move to %s V ends here",
                    smu.name,
                    reading.voltage,
                    reading.current,
                    new_position,
                )
                return

    async def _arrive(self, level: float, timeout: TimeoutCalculator) -> Reading:
        smu = self.smu
        deadline = asyncio.get_running_loop().time() + (timeout() or math.inf)
        while True:
            reading = await smu.take_reading()
            if abs(reading.voltage - level) <= smu.tolerance or reading.in_compliance:
                return reading
            await smu.raise_queued_errors(f"setting {level} V")
            if asyncio.get_running_loop().time() > deadline:
                raise KeithleyError(
                    f"{smu.name}: the source did not reach {level} V (reads {reading.voltage} V) "
                    "in time; check the voltage protection (:SOUR:VOLT:PROT) and the range"
                )
            await asyncio.sleep(self.poll)

    async def stop(self) -> None:
        """Nothing to send: a cancelled move stops stepping and the present level holds."""


class KeithleyMock(DeviceMock["Keithley2410"]):
    """A dry-run SMU: output on, moves arrive at once, readings are the mock signals' values."""

    async def connect(self, device: Keithley2410) -> None:
        device.dry_run = True
        set_mock_value(device.output, True)
        set_mock_value(device.compliance, 105e-6)
        set_mock_value(device.nplc, 1.0)
        set_mock_value(device.source_function, "VOLT")
        set_mock_value(device.sense_function, "CURR:DC")
        callback_on_mock_put(device.setpoint, lambda v: set_mock_value(device.voltage, v))


@default_mock_class(KeithleyMock)
class Keithley2410(SwitchedOutput, InstrumentDevice[KeithleyClient], StandardMovable[float]):
    """A Keithley 2400/2410/2450 SMU biasing a sensor: IV configuration, triggered readings.

    `trigger()` takes one reading (`:READ?`); `voltage` (the readback, named as the device),
    `current` and `in_compliance` report the last reading, so a point costs one reading, not one
    per signal. `set(v)` sources `v` volts, stepped when `step` > 0, and checks its arrival with
    a reading; a `trigger()` within `fresh_for` seconds after the move uses that reading instead
    of taking another (a longer wait, such as a plan's settle time, gets a new reading).
    """

    def __init__(
        self,
        url_or_client: str | KeithleyClient,
        dialect: Dialect = "2410",
        name: str = "",
        *,
        step: float = 0.0,
        step_pause: float = 0.1,
        tolerance: float = 0.05,
        fresh_for: float = 0.5,
    ) -> None:
        self.adopt(
            url_or_client,
            lambda url: KeithleyClient(url, dialect=dialect, name=name or "keithley"),
        )
        self.tolerance = tolerance
        self.fresh_for = fresh_for
        self.dry_run = False
        client = self.client
        source = f"{client.url}#"

        def reading(pick: Callable[[Reading], T]) -> Callable[[], Awaitable[T]]:
            async def read() -> T:
                return pick(await client.latest())

            return read

        def setting(pick: Callable[[Settings], T]) -> Callable[[], Awaitable[T]]:
            async def read() -> T:
                return pick(await client.settings())

            return read

        # Uncached: a staged signal would be fed by the backend's poll loop, not by the trigger.
        with self.add_children_as_readables(Format.HINTED_UNCACHED_SIGNAL):
            self.voltage = client_signal_r(
                float, reading(lambda r: r.voltage), source=f"{source}READ:VOLT", units="V"
            )
            self.current = client_signal_r(
                float, reading(lambda r: r.current), source=f"{source}READ:CURR", units="A"
            )
        with self.add_children_as_readables(Format.UNCACHED_SIGNAL):
            self.in_compliance = client_signal_r(
                bool, reading(lambda r: r.in_compliance), source=f"{source}READ:COMPLIANCE"
            )
        with self.add_children_as_readables(Format.CONFIG_SIGNAL):
            self.source_function = client_signal_r(
                str, setting(lambda s: s.source_function), source=f"{source}SOUR:FUNC"
            )
            self.sense_function = client_signal_r(
                str, setting(lambda s: s.sense_function), source=f"{source}SENS:FUNC"
            )
            self.compliance = client_signal_rw(
                float,
                setting(lambda s: s.compliance),
                client.set_compliance,
                source=f"{source}{client.model.compliance.strip(':')}",
                units="A",
            )
            self.nplc = client_signal_rw(
                float,
                setting(lambda s: s.nplc),
                client.set_nplc,
                source=f"{source}SENS:CURR:NPLC",
                units="PLC",
            )
            self.voltage_range = client_signal_rw(
                float,
                setting(lambda s: s.voltage_range),
                client.set_voltage_range,
                source=f"{source}SOUR:VOLT:RANG",
                units="V",
            )
            self.auto_range = client_signal_rw(
                bool,
                setting(lambda s: s.auto_range),
                client.set_auto_range,
                source=f"{source}SOUR:VOLT:RANG:AUTO",
            )
            self.output = client_signal_rw(
                bool, client.output, client.set_output, source=f"{source}OUTP"
            )
            self.step: SignalRW[float] = soft_signal_rw(float, step, units="V")
            self.step_pause: SignalRW[float] = soft_signal_rw(float, step_pause, units="s")
        self.setpoint: SignalRW[float] = client_signal_rw(
            float, client.level, client.set_level, source=f"{source}SOUR:VOLT", units="V"
        )
        super().__init__(name=name)

    @cached_property
    def movable_logic(self) -> KeithleyMoveLogic:
        return KeithleyMoveLogic(setpoint=self.setpoint, readback=self.voltage, smu=self)

    async def take_reading(self) -> Reading:
        """A new reading (a move's arrival check); the next `trigger()` reuses it."""
        if self.dry_run:
            return Reading(await self.voltage.get_value(), await self.current.get_value())
        reading = await self.client.measure()
        self.client.keep_unused(reading)
        return reading

    async def raise_queued_errors(self, after: str) -> None:
        if not self.dry_run:
            await self.client.drain_errors(after)

    @AsyncStatus.wrap
    async def trigger(self) -> None:
        """Take one reading, unless a move took one at this level within `fresh_for` s."""
        if not self.dry_run and self.client.take_unused(self.fresh_for) is None:
            await self.client.measure()

    @AsyncStatus.wrap
    async def configure_iv(
        self,
        compliance: float,
        nplc: float = 1.0,
        voltage_range: float | None = None,
        terminals: Terminals = "FRONT",
    ) -> None:
        """Reset and set up for IV (source V, measure I), then check the error queue.

        `compliance` in A, `voltage_range` in V (None: auto range). The output stays off.
        """
        if self.dry_run:
            set_mock_value(self.compliance, compliance)
            set_mock_value(self.nplc, nplc)
            set_mock_value(self.voltage_range, voltage_range or 0.0)
            set_mock_value(self.auto_range, voltage_range is None)
            set_mock_value(self.output, False)
            return
        await self.client.configure_iv(compliance, nplc, voltage_range, terminals)


def _roles(smu: Keithley2410) -> SourceMeter:
    """The role this module's device plays (checked by the type checker)."""
    return smu


__all__ = ["Keithley2410", "KeithleyMoveLogic"]
