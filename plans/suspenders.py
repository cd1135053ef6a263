"""Suspenders that keep the modules safe while any plan runs: coldbox humidity, lid and
interlock, and dry air.

`install_suspenders(RE, stand)` installs three bluesky suspenders (`stand_suspenders` builds them):

- dew point: the coldest plate less than `limits.dew_point_margin` K above the dew point
  (`coldbox-dew_point_margin`); it resumes once the margin is `hysteresis` K above the limit;
- lid and interlock: the lid open or the interlock tripped, which cuts TEC power
  (`coldbox-lid_closed_and_interlock_ok` low). One suspender for both: the lid is part of the
  interlock chain, so both trip together, and two suspenders tripping at the same instant make
  bluesky run the suspension twice (with a `TransitionError` in its log);
- dry-air flow: dry air on but its flow below `min_flow` l/min (`coldbox-dry_air_flow_lost`).

What happens when one trips: the RunEngine stops what the plan was moving (a coldbox move holds
the present temperature), runs the pre-plan, which ramps HV to 0 V on every slot holding a module
(`common.hv_zero`, the safe state), and waits. Once the condition has been good again for
`sleep` s it resumes from the plan's last checkpoint: the plans re-run the set of their current
point, so an IV step or a long-term-stability point ramps HV back, and a temperature step moves
the coldbox to its target again (re-powering the TECs the interlock switched off). A plan without
a checkpoint cannot be suspended and is aborted instead (bluesky's rule).

What the operator sees (the RunEngine prints it): "Suspending....", the justification, e.g.
"Signal coldbox-lid_closed_and_interlock_ok is low: the coldbox lid is open or its interlock is
tripped (TEC power cut): HV of slots 1-8 ramped to 0 V; the plan resumes from its last checkpoint
60 s after the lid is closed and the interlock clears", and on recovery "Suspender ... reports a
return to nominal conditions. Will sleep for 60 seconds ...". A tripped suspender also holds back
the start of the next plan until its condition is good.

Limits: they watch, they do not warm up. With the lid opened during a temperature step the
coldbox's own move fails at once (`ColdBoxError`); if that comes before the suspension, the plan
ends (with HV at 0 V) instead of waiting. bluesky's suspenders expect ophyd (v1) signals
(`subscribe(cb, event_type=, run=)`, `clear_sub`, `get()`); `PolledSignal` gives them that face
over the coldbox's ophyd-async signals, polled on the bluesky event loop (the values of one
condition come from the same status line, so they agree).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from typing import Any, Generic, TypeVar, cast

from bluesky import RunEngine
from bluesky.run_engine import get_bluesky_event_loop
from bluesky.suspenders import SuspendBoolHigh, SuspendBoolLow, SuspenderBase, SuspendFloor

from teststand.plans.common import PlanArgumentError, SlotSelection, hv_zero, module_slots
from teststand.plans.temperature import occupied_slots
from teststand.roles import COLDBOX
from teststand.stand import TestStand

log = logging.getLogger(__name__)
T = TypeVar("T")
SubscriptionCallback = Callable[..., object]


class PolledSignal(Generic[T]):
    """What bluesky's suspenders use of a signal, over an async `read` polled every `period`
    s on the bluesky event loop while anything is subscribed. Callbacks get the value as
    `callback(value=..., old_value=..., timestamp=..., obj=self)`, like ophyd's; a failed read
    is logged and the last value kept."""

    def __init__(self, name: str, read: Callable[[], Awaitable[T]], period: float = 0.5) -> None:
        if not period > 0:
            raise PlanArgumentError(f"poll period {period} s: give a period > 0 s")
        self.name = name
        self.period = period
        self._read = read
        self._callbacks: list[SubscriptionCallback] = []
        self._value: T | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping: asyncio.Event | None = None

    def __repr__(self) -> str:
        return f"PolledSignal({self.name!r})"

    def get(self) -> T | None:
        """The last value read (None before the first poll)."""
        return self._value

    def subscribe(
        self, callback: SubscriptionCallback, event_type: str | None = None, run: bool = True
    ) -> None:
        """Call `callback` with every polled value (the first poll follows at once)."""
        self._callbacks.append(callback)
        _on_bluesky_loop(self._start)

    def clear_sub(self, callback: SubscriptionCallback) -> None:
        """Stop calling `callback`; polling stops (after the read under way) with the last one."""
        if callback in self._callbacks:
            self._callbacks.remove(callback)
        if not self._callbacks:
            _on_bluesky_loop(self._stop)

    async def _start(self) -> None:
        if self._task is None or self._task.done():
            self._stopping = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._poll(self._stopping))

    async def _stop(self) -> None:
        task, stopping = self._task, self._stopping
        self._task = self._stopping = None
        if stopping is not None:
            stopping.set()
        if task is not None:
            await task

    async def _poll(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                value = await self._read()
            except Exception as exc:  # keep watching, but never silently
                log.error("%s: read for a suspender failed: %s", self.name, exc)
            else:
                if stopping.is_set():
                    return
                old, self._value = self._value, value
                for callback in list(self._callbacks):
                    try:
                        callback(value=value, old_value=old, timestamp=time.time(), obj=self)
                    except Exception:
                        log.exception("%s: suspender callback failed", self.name)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.period)


def _on_bluesky_loop(function: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run `function` on the bluesky event loop: wait for it from another thread, or leave it
    scheduled when called on the loop itself (from a plan's message)."""
    loop = cast(Callable[[], asyncio.AbstractEventLoop | None], get_bluesky_event_loop)()
    if loop is None or not loop.is_running():
        raise RuntimeError("the bluesky event loop is not running: make the RunEngine first")
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is not None and running is loop:
        running.create_task(function())
    else:
        asyncio.run_coroutine_threadsafe(function(), loop).result(10.0)


def _slot_names(numbers: list[int]) -> str:
    if not numbers:
        return "no slot"
    return "slot " + str(numbers[0]) if len(numbers) == 1 else f"slots {_ranges(numbers)}"


def _ranges(numbers: list[int]) -> str:
    parts: list[str] = []
    start = prev = numbers[0]
    for n in [*numbers[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if n is not None:
            start = prev = n
    return ",".join(parts)


def stand_suspenders(
    stand: TestStand,
    slots: SlotSelection = None,
    *,
    sleep: float = 60.0,
    hysteresis: float = 1.0,
    min_flow: float = 1.0,
    period: float = 0.5,
) -> list[SuspenderBase]:
    """The dew-point, lid, interlock and dry-air suspenders of the stand's coldbox; their
    pre-plan ramps HV to 0 V on `slots` (default: every slot holding a module)."""
    boxes = list(stand.role(COLDBOX).values())
    if not boxes:
        raise PlanArgumentError("this stand has no coldbox: there is nothing to watch")
    if sleep < 0 or hysteresis < 0 or min_flow < 0:
        raise PlanArgumentError(
            f"sleep {sleep} s, hysteresis {hysteresis} K, min_flow {min_flow} l/min: give "
            "values >= 0"
        )
    box = boxes[0]
    chosen = occupied_slots(stand) if slots is None else module_slots(stand, slots)
    safe = partial(hv_zero, chosen)
    margin = stand.config.limits.dew_point_margin
    hv = f"HV of {_slot_names([s.number for s in chosen])} ramped to 0 V"
    after = f"the plan resumes from its last checkpoint {sleep:g} s after"

    async def closed() -> bool:
        lid_closed, interlock_ok = await asyncio.gather(
            box.lid_closed.get_value(), box.interlock_ok.get_value()
        )
        return bool(lid_closed and interlock_ok)

    async def flow_lost() -> bool:
        valve, flow = await asyncio.gather(box.dry_air.get_value(), box.dry_air_flow.get_value())
        return bool(valve and flow < min_flow)

    common: dict[str, Any] = {"sleep": sleep, "pre_plan": safe}
    return [
        SuspendFloor(
            PolledSignal(box.dew_point_margin.name, box.dew_point_margin.get_value, period),
            margin,
            resume_thresh=margin + hysteresis,
            tripped_message=(
                f"the coldest plate is less than {margin:g} K above the dew point "
                f"(limits.dew_point_margin): {hv}; {after} the margin is back above "
                f"{margin + hysteresis:g} K (flush with dry air, close the lid, or warm up)"
            ),
            **common,
        ),
        SuspendBoolLow(
            PolledSignal(f"{box.name}-lid_closed_and_interlock_ok", closed, period),
            tripped_message=(
                f"the coldbox lid is open or its interlock is tripped (TEC power cut): {hv}; "
                f"{after} the lid is closed and the interlock clears"
            ),
            **common,
        ),
        SuspendBoolHigh(
            PolledSignal(f"{box.name}-dry_air_flow_lost", flow_lost, period),
            tripped_message=(
                f"dry air is on but its flow is below {min_flow:g} l/min: {hv}; {after} the "
                "flow is back (check the dry-air supply)"
            ),
            **common,
        ),
    ]


def install_suspenders(
    RE: RunEngine, stand: TestStand, slots: SlotSelection = None, **options: Any
) -> list[SuspenderBase]:
    """Install `stand_suspenders(stand, slots, **options)` on `RE` and return them;
    `RE.clear_suspenders()` removes them and stops their polling."""
    suspenders = stand_suspenders(stand, slots, **options)
    for suspender in suspenders:
        RE.install_suspender(suspender)
    return suspenders


__all__ = ["PolledSignal", "install_suspenders", "stand_suspenders"]
