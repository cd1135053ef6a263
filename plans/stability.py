"""Long-term stability: modules held at bias for hours, read at a steady interval.

Each point is one checkpoint: the slots still measuring are (re)set to their bias, then one event
reads every slot (time, bias, leakage current, LV voltage and current, module temperature), the
per-slot state (`lts-slotN_state`, as in the IV contract) and the coldbox's air and dew point.
Because the set is part of every point, a rewind after a pause or a suspension (whose pre-plan
took HV to 0 V) brings the bias back before the next reading. A slot whose current reaches the
compliance, or whose channel fails to hold the bias (a trip), is ramped to 0 V and carries the
reason from then on; the others go on. Whatever way the run ends, every slot goes back to 0 V.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Sequence
from functools import partial
from typing import Any

from bluesky import Msg
from bluesky import preprocessors as bpp
from bluesky.utils import MsgGenerator
from ophyd_async.core import AsyncStatus

from teststand.callbacks.iv_analysis import COMPLIANCE_FRACTION, criteria_for
from teststand.plans.common import (
    PlanArgumentError,
    SlotSelection,
    await_all,
    call,
    check_bias,
    check_compliance,
    hv_safe,
    instruments,
    module_slots,
    read_now,
    run_metadata,
    slot_info,
    stop_state,
    switch_on,
    zero_setpoint,
)
from teststand.plans.iv import IVReadout
from teststand.roles import COLDBOX
from teststand.stand import ModuleSlot, TestStand

log = logging.getLogger(__name__)


async def hold_bias(targets: Sequence[tuple[ModuleSlot, float]], problems: dict[int, str]) -> None:
    """Set every slot to its bias together and wait; a slot that fails is noted in `problems`
    (by slot number) instead of failing the others."""
    results = await asyncio.gather(
        *(slot.set(voltage) for slot, voltage in targets), return_exceptions=True
    )
    for (slot, _), result in zip(targets, results, strict=True):
        if isinstance(result, BaseException):
            problems[slot.number] = str(result) or type(result).__name__
        else:
            problems.pop(slot.number, None)


class BiasHold:
    """The biased slots of a run as one thing the RunEngine sets and stops.

    `set(targets)` is `hold_bias` (a slot that fails is noted in `problems`; the status itself
    succeeds). `stop()`, which the RunEngine calls at a pause, a suspension and the end of the
    plan, cancels ramps still under way, waits until they have ended and holds those slots at
    their present voltage, so nothing writes a bias after a suspender's pre-plan took HV to 0 V.
    (A ramp run from a bare `wait_for` message would go on writing: bluesky does not cancel it.)
    """

    def __init__(self, name: str = "bias-hold") -> None:
        self.name = name
        self.parent = None
        self.problems: dict[int, str] = {}
        self._moving: list[ModuleSlot] = []
        self._ramps: asyncio.Future[None] | None = None

    def set(self, targets: Sequence[tuple[ModuleSlot, float]]) -> AsyncStatus[None]:
        ramps = asyncio.ensure_future(hold_bias(targets, self.problems))
        self._ramps, self._moving = ramps, [slot for slot, _ in targets]
        return AsyncStatus(_until_done_or_stopped(ramps))

    async def stop(self, success: bool = True) -> None:
        ramps = self._ramps
        if ramps is None or ramps.done():
            return
        ramps.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ramps
        await asyncio.gather(
            *(slot.stop(success=True) for slot in self._moving),
            return_exceptions=True,
        )


async def _until_done_or_stopped(ramps: asyncio.Future[None]) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        await ramps


def long_term_stability(
    stand: TestStand,
    slots: SlotSelection = None,
    voltage: float | None = None,
    duration: float = 3600.0,
    interval: float = 60.0,
    *,
    compliance: float | None = None,
    stage: str = "TEST",
    operator: str | None = None,
    md: dict[str, Any] | None = None,
) -> MsgGenerator[str]:
    """Hold the slots at `voltage` V (a magnitude; default: each sensor's operating voltage)
    for `duration` s, reading them every `interval` s, as one run (test "long_term_stability").

    A slot whose current reaches `compliance` (default: the stand's) is ramped down and stopped.
    `duration` counts readings (duration / interval + 1 of them), so time spent paused or
    suspended is not counted as time at bias. Returns the run uid.

    Parameters
    ----------
    slots : int, str or list of int, optional
        Slot numbers: 3, [1, 2] or "1-4,7" (default: every slot holding a module).
    voltage : float, optional
        Bias, V (a magnitude; default: each sensor type's operating voltage).
    duration : float
        Time at bias, s (> 0).
    interval : float
        Time between readings, s (> 0).
    compliance : float, optional
        Current at which a slot stops, A (default and maximum: the stand's limits.compliance).
    stage : str
        The ITk test stage recorded with the run, e.g. "TEST", "INITIAL_WARM".
    operator : str, optional
        Who runs the test (default: $TESTSTAND_OPERATOR or the login name).
    md : dict, optional
        Extra start-document metadata.
    """
    chosen = module_slots(stand, slots)
    voltages: dict[int, float] = {}
    for slot in chosen:
        info = slot_info(stand, slot)
        bias = criteria_for(info.sensor).operating_voltage if voltage is None else voltage
        check_bias(stand, [slot], bias)
        voltages[slot.number] = bias
    for name, value in (("duration", duration), ("interval", interval)):
        if not (math.isfinite(value) and value > 0):
            raise PlanArgumentError(f"{name} {value} s: give a time > 0 s")
    compliance = check_compliance(stand, compliance)
    points = math.floor(duration / interval + 1e-9) + 1
    readout = IVReadout(chosen, name="lts")
    environment = list(stand.role(COLDBOX).values())[:1]
    metadata = run_metadata(
        stand,
        chosen,
        "long_term_stability",
        stage,
        operator,
        md,
        long_term_stability={
            "voltages": {str(n): v for n, v in voltages.items()},
            "duration": duration,
            "interval": interval,
            "points": points,
            "compliance": compliance,
            "state_keys": {str(s.number): f"{readout.name}-slot{s.number}_state" for s in chosen},
        },
    )

    def run() -> MsgGenerator[str]:
        uid = yield Msg("open_run", **metadata)
        yield from switch_on(chosen)
        active = list(chosen)
        hold = BiasHold(f"{readout.name}-bias")
        problems = hold.problems
        for point in range(points):
            yield Msg("checkpoint")
            targets = [(slot, voltages[slot.number]) for slot in active]
            yield Msg("set", hold, targets, group=f"{hold.name}-{point}")
            yield Msg("wait", None, group=f"{hold.name}-{point}")
            yield Msg("create", None, name="primary")
            read_at = time.monotonic()
            reading = yield Msg("read", readout)
            for device in environment:
                yield Msg("read", device)
            yield Msg("save")
            if reading is None:  # a rewind interrupted the read: read again for the checks
                reading = yield from read_now(readout)
            stopped = []
            for slot in active:
                current = abs(reading[slot.leakage_current.name]["value"])
                if current >= COMPLIANCE_FRACTION * compliance:
                    readout.states[slot.number]("compliance")
                elif slot.number in problems:
                    status = yield from call(slot.hv_channel.read_status)
                    readout.states[slot.number](stop_state(status))
                    log.warning("slot %d stopped: %s", slot.number, problems[slot.number])
                else:
                    continue
                stopped.append(slot)
            if stopped:
                yield from await_all(*(partial(zero_setpoint, s.hv_channel) for s in stopped))
                active = [s for s in active if s not in stopped]
            if not active:
                break
            if point < points - 1:
                yield Msg("sleep", None, max(interval - (time.monotonic() - read_at), 0.0))
        for slot in active:
            readout.states[slot.number]("done")
        yield Msg("close_run")
        return str(uid)

    plan = bpp.baseline_wrapper(run(), instruments(stand))
    uid: str = yield from hv_safe(plan, chosen)
    return uid


__all__ = ["BiasHold", "hold_bias", "long_term_stability"]
