"""Coldbox temperature: `set_temperature` (one step) and `thermal_cycle` (n cycles low/high).

The dew-point rule (QUALIFICATION.md): before cooling, dry air flushes the box until its humidity
is below `flush_rh` (or its dew point is already low enough for the target); a target less than
`limits.dew_point_margin` above the dew point is then refused (`DewPointError`) before any set
point moves. Warming has no such constraint; the dry air stays on all the same.

A step writes the chiller's set point (target + `chiller_offset`, inside the chiller's limits) and
starts it, writes the TEC set point and powers the TECs, then moves the coldbox with its settle
logic (within `tolerance` K for `settle` s). While it waits, the slots, the chiller and the
coldbox are read every `interval` s, so the run holds the temperature history; the
`thermal-target`, `thermal-phase` ("flush", "move", "dwell", "reached") and `thermal-cycle` keys
say where the run was at each event.

Every reading is its own checkpoint. When the RunEngine pauses or suspends it stops the coldbox
(the TECs hold the present temperature); after resuming the plan sees the changed set point (or
TECs switched off by the interlock) and moves to its target again, so a step or a dwell ends only
at its temperature. A dwell that had to move again starts afresh.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bluesky import Msg
from bluesky import preprocessors as bpp
from bluesky.utils import MsgGenerator
from ophyd_async.core import (
    Device,
    StandardReadable,
    WatchableAsyncStatus,
    soft_signal_r_and_setter,
)

from teststand.devices.coldbox import ColdBox
from teststand.devices.coldbox.client import SETPOINT_RANGE
from teststand.devices.lauda import LaudaChiller
from teststand.devices.slot import ModuleSlot
from teststand.errors import TeststandError
from teststand.plans.common import (
    PlanArgumentError,
    Readings,
    hv_zero,
    instruments,
    read_now,
    run_metadata,
)
from teststand.stand import TestStand

#: A set point read back within this of the value written is taken as unchanged (°C).
SETPOINT_RESOLUTION = 0.01


class DewPointError(TeststandError, ValueError):
    """A cooling target too close to the dew point of the (flushed) box; nothing was cooled."""


class SettlingMove:
    """The coldbox as the plans `set` it: the RunEngine calls `stop()` on everything it set at a
    pause, a suspension and the end of every plan, and the coldbox's stop holds the present
    temperature. Here `stop()` stops only a move still in progress, so a reached set point is
    not replaced by the temperature of the moment (-34.93 for -35) when the plan ends."""

    def __init__(self, device: ColdBox) -> None:
        self.device = device
        self.name = device.name
        self.parent = None
        self._status: WatchableAsyncStatus[float] | None = None

    def set(self, value: float, timeout: float | None = None) -> WatchableAsyncStatus[float]:
        """Move the coldbox; `timeout` None: its own estimate from distance and rate."""
        status = self.device.set(value) if timeout is None else self.device.set(value, timeout)
        self._status = status
        return status

    async def stop(self, success: bool = True) -> None:
        if self._status is not None and not self._status.done:
            await self.device.stop(success=success)


class ThermalReadout(StandardReadable):
    """The slots, chiller and coldbox of a temperature run, with where the run is: `target`
    (°C), `phase` and `cycle` (0 outside a thermal cycle), read together at every point."""

    def __init__(self, devices: Sequence[Device], name: str = "thermal") -> None:
        with self.add_children_as_readables():
            self.target, self.set_target = soft_signal_r_and_setter(float, 0.0, units="degC")
            self.phase, self.set_phase = soft_signal_r_and_setter(str, "")
            self.cycle, self.set_cycle = soft_signal_r_and_setter(int, 0)
        self.add_readables(list(devices))
        super().__init__(name=name)


def occupied_slots(stand: TestStand) -> list[ModuleSlot]:
    """Every slot that holds a module, by number (may be none: an empty box can be cooled)."""
    return [stand.slots[n] for n, slot in sorted(stand.config.slots.items()) if slot.module]


def thermal_devices(stand: TestStand) -> tuple[ColdBox, LaudaChiller | None]:
    """The stand's coldbox (required) and chiller (optional)."""
    boxes = [d for d in stand.instruments.values() if isinstance(d, ColdBox)]
    chillers = [d for d in stand.instruments.values() if isinstance(d, LaudaChiller)]
    if not boxes:
        raise PlanArgumentError(
            "this stand has no coldbox (an instrument of kind 'coldbox' in the stand file); "
            "temperature plans need one"
        )
    return boxes[0], chillers[0] if chillers else None


def check_temperature(stand: TestStand, value: float, what: str = "target") -> None:
    """Refuse a temperature outside the stand's limits.temperature or the TEC range."""
    limits = stand.config.limits.temperature
    low, high = max(limits.min, SETPOINT_RANGE[0]), min(limits.max, SETPOINT_RANGE[1])
    if not (math.isfinite(value) and low <= value <= high):
        raise PlanArgumentError(
            f"{what} {value} °C is outside {low:g}..{high:g} °C, the stand's limits.temperature "
            f"({limits.min:g}..{limits.max:g} °C) within the TEC range "
            f"({SETPOINT_RANGE[0]:g}..{SETPOINT_RANGE[1]:g} °C); choose a temperature inside it"
        )


def _check_positive(**values: float | None) -> None:
    for name, value in values.items():
        if value is not None and not (math.isfinite(value) and value > 0):
            raise PlanArgumentError(f"{name} {value}: give a number > 0")


def _check_settings(
    tolerance: float,
    settle: float,
    interval: float,
    chiller_offset: float,
    flush_rh: float,
    flush_timeout: float,
    timeout: float | None,
) -> None:
    _check_positive(
        tolerance=tolerance, interval=interval, flush_timeout=flush_timeout, timeout=timeout
    )
    if not (math.isfinite(settle) and settle >= 0):
        raise PlanArgumentError(f"settle {settle} s: give a settle time >= 0 s")
    if not math.isfinite(chiller_offset):
        raise PlanArgumentError(f"chiller_offset {chiller_offset} K: give a finite offset")
    if not 0 < flush_rh < 100:
        raise PlanArgumentError(
            f"flush_rh {flush_rh} %: give the relative humidity that counts as flushed, "
            "in (0, 100) %, e.g. 0.5 %"
        )


@dataclass
class Thermal:
    """What the steps of one temperature run share."""

    stand: TestStand
    coldbox: ColdBox
    chiller: LaudaChiller | None
    readout: ThermalReadout
    tolerance: float
    settle: float
    interval: float
    chiller_offset: float
    flush_rh: float
    flush_timeout: float
    timeout: float | None
    margin: float = field(init=False)
    mover: SettlingMove = field(init=False)
    chiller_range: tuple[float, float] = (-math.inf, math.inf)

    def __post_init__(self) -> None:
        self.margin = self.stand.config.limits.dew_point_margin
        self.mover = SettlingMove(self.coldbox)

    def chiller_target(self, target: float) -> float:
        low, high = self.chiller_range
        return round(min(max(target + self.chiller_offset, low), high), 2)

    def record(self) -> MsgGenerator[Readings]:
        """One event of the primary stream; returns its readings (read again, outside the
        event, when a rewind interrupted the read)."""
        yield Msg("create", None, name="primary")
        reading: Readings | None = yield Msg("read", self.readout)
        yield Msg("save")
        if reading is None:
            reading = yield from read_now(self.readout)
        return reading

    def value(self, reading: Readings, signal: Device) -> Any:
        return reading[signal.name]["value"]

    def intact(self, reading: Readings, target: float) -> bool:
        """Whether the set points and power of a step toward `target` are as the step left
        them (a pause or suspension stops the coldbox, the interlock cuts TEC power)."""
        box, chiller = self.coldbox, self.chiller
        ok = (
            abs(self.value(reading, box.setpoint) - target) < SETPOINT_RESOLUTION
            and self.value(reading, box.tec_power) is True
        )
        if chiller is not None:
            ok = ok and (
                abs(self.value(reading, chiller.setpoint) - self.chiller_target(target))
                < SETPOINT_RESOLUTION
                and self.value(reading, chiller.running) is True
            )
        return ok


def prepare(ctx: Thermal) -> MsgGenerator[None]:
    """Dry air on, and the chiller's set point limits read (the chiller target is kept inside)."""
    yield Msg("set", ctx.coldbox.dry_air, True, group="thermal-prepare")
    yield Msg("wait", None, group="thermal-prepare")
    if ctx.chiller is not None:
        low = yield from read_now(ctx.chiller.lower_limit)
        high = yield from read_now(ctx.chiller.upper_limit)
        ctx.chiller_range = (
            low[ctx.chiller.lower_limit.name]["value"],
            high[ctx.chiller.upper_limit.name]["value"],
        )


def flush(ctx: Thermal, target: float) -> MsgGenerator[None]:
    """Before cooling to `target`: flush until RH <= flush_rh or the dew point is low enough,
    then refuse the target if it is less than the margin above the dew point. No set point
    moves here; warming (target at or above the coldest plate) passes at once."""
    box = ctx.coldbox
    now = yield from read_now(box)
    coldest = ctx.value(now, box.dew_point) + ctx.value(now, box.dew_point_margin)
    if target >= coldest:
        return
    ctx.readout.set_phase("flush")
    ctx.readout.set_target(target)
    yield Msg("set", box.dry_air, True, group="thermal-flush")
    yield Msg("wait", None, group="thermal-flush")
    deadline = time.monotonic() + ctx.flush_timeout
    while True:
        yield Msg("checkpoint")
        reading = yield from ctx.record()
        rh = ctx.value(reading, box.relative_humidity)
        dew = ctx.value(reading, box.dew_point)
        timed_out = time.monotonic() >= deadline
        if rh <= ctx.flush_rh or dew + ctx.margin <= target or timed_out:
            break
        yield Msg("sleep", None, ctx.interval)
    if dew + ctx.margin > target:
        flow = ctx.value(reading, box.dry_air_flow)
        how = (
            f"after {ctx.flush_timeout:g} s of flushing (flush_timeout)"
            if timed_out
            else f"flushed to {rh:.2f} %RH (flush_rh {ctx.flush_rh:g} %)"
        )
        raise DewPointError(
            f"{target} °C refused: {how} the coldbox's dew point is {dew:.1f} °C (dry-air flow "
            f"{flow:.1f} l/min), and cooling below {dew + ctx.margin:.1f} °C would break the "
            f"{ctx.margin:g} K dew-point margin (limits.dew_point_margin). Choose a target of "
            f"at least {math.ceil(dew + ctx.margin)} °C, or dry the box further (check the "
            "dry-air supply, give a longer flush_timeout or a lower flush_rh)"
        )


def _issue(ctx: Thermal, target: float, group: str) -> MsgGenerator[None]:
    """Chiller set point and start, TEC settle settings, set point and power, then the coldbox
    move (done once within tolerance for the settle time) in `group`."""
    box, chiller = ctx.coldbox, ctx.chiller
    writes = f"{group}-writes"
    if chiller is not None:
        yield Msg("set", chiller.setpoint, ctx.chiller_target(target), group=writes)
        yield Msg("set", chiller.running, True, group=writes)
    yield Msg("set", box.tolerance, ctx.tolerance, group=writes)
    yield Msg("set", box.settle_time, ctx.settle, group=writes)
    yield Msg("set", box.setpoint, target, group=writes)
    yield Msg("wait", None, group=writes)
    yield Msg("set", box.tec_power, True, group=writes)
    yield Msg("wait", None, group=writes)
    timeout = {} if ctx.timeout is None else {"timeout": ctx.timeout}
    yield Msg("set", ctx.mover, target, group=group, **timeout)


def move(ctx: Thermal, target: float) -> MsgGenerator[None]:
    """Move to `target` and wait until it has settled, reading every `interval` s."""
    ctx.readout.set_phase("move")
    ctx.readout.set_target(target)
    group = ""
    issue = True
    while True:
        yield Msg("checkpoint")
        if issue:
            group = f"thermal-move-{time.monotonic_ns()}"
            yield from _issue(ctx, target, group)
            issue = False
        yield from ctx.record()
        done = yield Msg("wait", None, group=group, timeout=ctx.interval, error_on_timeout=False)
        if done:  # None after a rewind: not known, look again at the next point
            now = yield from read_now(ctx.coldbox)
            if ctx.chiller is not None:
                now = {**now, **(yield from read_now(ctx.chiller))}
            if ctx.intact(now, target):
                return
            issue = True  # stopped by a pause or suspension: move again


def stay(ctx: Thermal, target: float, seconds: float) -> MsgGenerator[None]:
    """Stay at `target` for `seconds`, reading every `interval` s; if the set points were
    disturbed (pause, suspension, interlock), move back and start the dwell again."""
    ctx.readout.set_phase("dwell")
    end = time.monotonic() + seconds
    while True:
        yield Msg("checkpoint")
        reading = yield from ctx.record()
        if not ctx.intact(reading, target):
            yield from move(ctx, target)
            ctx.readout.set_phase("dwell")
            end = time.monotonic() + seconds
            continue
        left = end - time.monotonic()
        if left <= 0:
            return
        yield Msg("sleep", None, min(ctx.interval, left))


def go_to(ctx: Thermal, target: float) -> MsgGenerator[None]:
    """The dew-point rule for `target`, then the move."""
    yield from flush(ctx, target)
    yield from move(ctx, target)


def _context(
    stand: TestStand,
    tolerance: float,
    settle: float,
    interval: float,
    chiller_offset: float,
    flush_rh: float,
    flush_timeout: float,
    timeout: float | None,
) -> Thermal:
    _check_settings(tolerance, settle, interval, chiller_offset, flush_rh, flush_timeout, timeout)
    coldbox, chiller = thermal_devices(stand)
    readers: list[Device] = [*occupied_slots(stand), coldbox]
    if chiller is not None:
        readers.append(chiller)
    return Thermal(
        stand,
        coldbox,
        chiller,
        ThermalReadout(readers),
        tolerance,
        settle,
        interval,
        chiller_offset,
        flush_rh,
        flush_timeout,
        timeout,
    )


def _settings(ctx: Thermal) -> dict[str, Any]:
    return {
        "tolerance": ctx.tolerance,
        "settle": ctx.settle,
        "interval": ctx.interval,
        "chiller_offset": ctx.chiller_offset,
        "flush_rh": ctx.flush_rh,
        "dew_point_margin": ctx.margin,
    }


def set_temperature(
    stand: TestStand,
    target: float,
    tolerance: float = 1.0,
    settle: float = 60.0,
    *,
    interval: float = 10.0,
    chiller_offset: float = -10.0,
    flush_rh: float = 0.5,
    flush_timeout: float = 1800.0,
    timeout: float | None = None,
    stage: str = "TEST",
    operator: str | None = None,
    md: dict[str, Any] | None = None,
) -> MsgGenerator[str]:
    """Bring the coldbox plates to `target` °C and wait until they have stayed within
    `tolerance` K for `settle` s, as one run (test "temperature"); returns the run uid.

    Cooling flushes the box first and refuses (`DewPointError`) a target less than the stand's
    dew-point margin above the flushed box's dew point, before any set point moves. The chiller
    runs at target + `chiller_offset` (inside its limits). Readings every `interval` s; the move
    times out after `timeout` s (default: the coldbox's own estimate from its rate).
    """
    check_temperature(stand, target)
    ctx = _context(
        stand, tolerance, settle, interval, chiller_offset, flush_rh, flush_timeout, timeout
    )
    metadata = run_metadata(
        stand,
        occupied_slots(stand),
        "temperature",
        stage,
        operator,
        md,
        temperature={"target": target, **_settings(ctx)},
    )

    def body() -> MsgGenerator[str]:
        uid = yield Msg("open_run", **metadata)
        yield from prepare(ctx)
        yield from go_to(ctx, target)
        ctx.readout.set_phase("reached")
        yield from ctx.record()
        yield Msg("close_run")
        return str(uid)

    uid: str = yield from bpp.baseline_wrapper(body(), instruments(stand))
    return uid


def thermal_cycle(
    stand: TestStand,
    n: int = 10,
    low: float = -35.0,
    high: float = 20.0,
    dwell: float = 600.0,
    *,
    end: float | None = None,
    tolerance: float = 1.0,
    settle: float = 60.0,
    interval: float = 10.0,
    chiller_offset: float = -10.0,
    flush_rh: float = 0.5,
    flush_timeout: float = 1800.0,
    timeout: float | None = None,
    stage: str = "TEST",
    operator: str | None = None,
    md: dict[str, Any] | None = None,
) -> MsgGenerator[str]:
    """`n` thermal cycles as one run (test "thermal_cycle"): each goes to `low`, stays
    `dwell` s, goes to `high`, stays `dwell` s; the run ends at `end` (default `high`).

    HV goes to 0 V on every module first and is held there (0 V again at every cycle). Every
    cooling step follows the dew-point rule of `set_temperature` (flush, then refuse a `low`
    too close to the dew point). Returns the run uid.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise PlanArgumentError(f"n {n!r}: give the number of cycles as an integer >= 1")
    check_temperature(stand, low, "low")
    check_temperature(stand, high, "high")
    if not low < high:
        raise PlanArgumentError(f"low {low} °C must be below high {high} °C")
    final = high if end is None else end
    check_temperature(stand, final, "end")
    if not (math.isfinite(dwell) and dwell >= 0):
        raise PlanArgumentError(f"dwell {dwell} s: give a dwell time >= 0 s")
    ctx = _context(
        stand, tolerance, settle, interval, chiller_offset, flush_rh, flush_timeout, timeout
    )
    slots = occupied_slots(stand)
    metadata = run_metadata(
        stand,
        slots,
        "thermal_cycle",
        stage,
        operator,
        md,
        thermal_cycle={
            "n": n,
            "low": low,
            "high": high,
            "dwell": dwell,
            "end": final,
            **_settings(ctx),
        },
    )

    def body() -> MsgGenerator[str]:
        uid = yield Msg("open_run", **metadata)
        yield from prepare(ctx)
        for cycle in range(1, n + 1):
            ctx.readout.set_cycle(cycle)
            yield from hv_zero(slots)
            for target in (low, high):
                yield from go_to(ctx, target)
                yield from stay(ctx, target, dwell)
        if final != high:
            yield from go_to(ctx, final)
        ctx.readout.set_phase("reached")
        yield from ctx.record()
        yield Msg("close_run")
        return str(uid)

    uid: str = yield from bpp.baseline_wrapper(body(), instruments(stand))
    return uid


__all__ = [
    "DewPointError",
    "ThermalReadout",
    "check_temperature",
    "occupied_slots",
    "set_temperature",
    "thermal_cycle",
    "thermal_devices",
]
