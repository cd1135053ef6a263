"""The steps of the temperature plans: the dew-point flush, the coldbox move and the dwell,
reading the slots, chiller and coldbox every `interval` s (see `teststand.plans.temperature`).

Every reading is its own checkpoint. When the RunEngine pauses or suspends it stops the coldbox
(the TECs hold the present temperature); after resuming a step sees the changed set point (or
TECs switched off by the interlock) and moves to its target again, so a step or a dwell ends only
at its temperature. A dwell that had to move again starts afresh.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bluesky import Msg
from bluesky.utils import MsgGenerator
from ophyd_async.core import StandardReadable, soft_signal_r_and_setter

from teststand.errors import TeststandError
from teststand.plans.common import Readings, read_now
from teststand.roles import Chiller, Coldbox, Operation
from teststand.stand import TestStand

log = logging.getLogger(__name__)

#: A set point read back within this of the value written is taken as unchanged (°C).
SETPOINT_RESOLUTION = 0.01


class DewPointError(TeststandError, ValueError):
    """A cooling target too close to the dew point of the (flushed) box; nothing was cooled."""


class SettlingMove:
    """The coldbox as the plans `set` it: the RunEngine calls `stop()` on everything it set at a
    pause, a suspension and the end of every plan, and the coldbox's stop holds the present
    temperature. Here `stop()` stops only a move still in progress, so a reached set point is
    not replaced by the temperature of the moment (-34.93 for -35) when the plan ends."""

    def __init__(self, device: Coldbox) -> None:
        self.device = device
        self.name = device.name
        self.parent = None
        self._status: Operation | None = None

    def set(self, value: float, timeout: float | None = None) -> Operation:
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

    def __init__(self, devices: Sequence[Any], name: str = "thermal") -> None:
        with self.add_children_as_readables():
            self.target, self.set_target = soft_signal_r_and_setter(float, 0.0, units="degC")
            self.phase, self.set_phase = soft_signal_r_and_setter(str, "")
            self.cycle, self.set_cycle = soft_signal_r_and_setter(int, 0)
        self.add_readables(list(devices))
        super().__init__(name=name)


@dataclass
class Thermal:
    """What the steps of one temperature run share."""

    stand: TestStand
    coldbox: Coldbox
    chiller: Chiller | None
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
    #: The chiller's lowest set point under the dew-point rule, from the last flush (its bath
    #: must stay `margin` above the dew point, as the IOC checks; the TECs cool the rest).
    chiller_floor: float = -math.inf

    def __post_init__(self) -> None:
        self.margin = self.stand.config.limits.dew_point_margin
        self.mover = SettlingMove(self.coldbox)

    def chiller_target(self, target: float) -> float:
        low, high = self.chiller_range
        return round(min(max(target + self.chiller_offset, low, self.chiller_floor), high), 2)

    def record(self) -> MsgGenerator[Readings]:
        """One event of the primary stream; returns its readings (read again, outside the
        event, when a rewind interrupted the read)."""
        yield Msg("create", None, name="primary")
        reading: Readings | None = yield Msg("read", self.readout)
        yield Msg("save")
        if reading is None:
            reading = yield from read_now(self.readout)
        return reading

    def value(self, reading: Readings, signal: Any) -> Any:
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
    """Before a step to `target`: flush until RH <= flush_rh or the dew point is low enough for
    the plates and the chiller's bath (`chiller_offset` below them), then refuse the target if
    it is less than the margin above the dew point; a bath the flushed box cannot allow is set
    no colder than the rule (`chiller_floor`). No set point moves here; a dry enough box
    passes at once."""
    box = ctx.coldbox
    now = yield from read_now(box)
    coldest = ctx.value(now, box.dew_point) + ctx.value(now, box.dew_point_margin)
    bath = target + ctx.chiller_offset if ctx.chiller is not None else target
    if min(target, bath) >= coldest:
        ctx.chiller_floor = -math.inf
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
        if rh <= ctx.flush_rh or dew + ctx.margin <= min(target, bath) or timed_out:
            break
        yield Msg("sleep", None, ctx.interval)
    # The bath no colder than the rule allows now (rounded up to the set point's resolution).
    ctx.chiller_floor = math.ceil((dew + ctx.margin) * 100) / 100
    if ctx.chiller is not None and bath < ctx.chiller_floor:
        log.info(
            "chiller set point %.2f °C instead of %.2f °C: the bath stays %g K above the "
            "flushed box's dew point %.1f °C",
            ctx.chiller_target(target),
            bath,
            ctx.margin,
            dew,
        )
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


def issue_move(ctx: Thermal, target: float, group: str) -> MsgGenerator[None]:
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
            yield from issue_move(ctx, target, group)
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


__all__ = [
    "DewPointError",
    "SettlingMove",
    "Thermal",
    "ThermalReadout",
    "go_to",
    "move",
    "prepare",
    "stay",
]
