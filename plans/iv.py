"""IV scans: every chosen slot stepped together on the HV supply (the SMU scan: `iv_smu`).

The step loop yields bare messages (no decorated plan stubs per point): bluesky's own stubs cost
milliseconds per call in `traceback.format_stack`, which would dominate a fast scan. Each point is
one `wait_for` that ramps every slot together, an optional settle, and one `read` of a readout
device that reads every slot at once (the HV supply answers all channels with one group
command). A slot that trips stops alone; the others go on.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from bluesky import Msg
from bluesky import preprocessors as bpp
from bluesky.utils import MsgGenerator
from ophyd_async.core import (
    SignalR,
    StandardReadable,
    StandardReadableFormat,
    soft_signal_r_and_setter,
)

from teststand.callbacks.iv_analysis import (
    COMPLIANCE_FRACTION,
    STOP_REASONS,
    criteria_for,
    find_breakdown,
)
from teststand.callbacks.progress import progress
from teststand.callbacks.schema import IVKeys, IVSettings, IVState
from teststand.plans.common import (
    PlanArgumentError,
    SlotSelection,
    await_all,
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
from teststand.plans.docs import documented
from teststand.roles import RampFailed
from teststand.stand import ModuleSlot, TestStand

log = logging.getLogger("teststand.plans.iv")


def iv_voltages(start: float, stop: float, step: float) -> list[float]:
    """The set points from `start` to `stop` (included) in `step`s; the step must lead there."""
    if min(start, stop) < 0:
        raise PlanArgumentError(
            f"{min(start, stop)} V: give bias voltages as magnitudes (the supply's polarity "
            "applies the sign)"
        )
    if not math.isfinite(step) or step == 0:
        raise PlanArgumentError(f"step {step} V: give a non-zero step, e.g. 5 V")
    if stop != start and (stop - start) * step < 0:
        raise PlanArgumentError(
            f"step {step} V leads away from {stop} V (start {start} V): flip its sign"
        )
    count = math.floor(abs((stop - start) / step) + 1e-9)
    points = [round(start + i * step, 6) for i in range(count + 1)]
    if points[-1] != stop:
        points.append(stop)
    return points


class IVReadout(StandardReadable):
    """Reads every scanned slot, the nominal step voltage (`iv_voltage`) and each slot's scan
    state (`iv-slotN_state`) in one go; with `states_apart`, the states are left to an
    `IVStates` read after the point's checks, in the same event."""

    def __init__(
        self, slots: Sequence[ModuleSlot], name: str = "iv", *, states_apart: bool = False
    ) -> None:
        self.states: dict[int, Callable[[IVState], None]] = {}
        self.state_signals: list[SignalR[str]] = []
        voltage, self.set_voltage = soft_signal_r_and_setter(
            float, name=f"{name}_voltage", units="V"
        )
        for slot in slots:
            signal, setter = soft_signal_r_and_setter(
                str, "measuring", name=f"{name}-slot{slot.number}_state"
            )
            self.state_signals.append(signal)
            self.states[slot.number] = setter
        readables: list[SignalR[Any]] = [voltage, *([] if states_apart else self.state_signals)]
        self.add_readables(list(slots))
        self.add_readables(readables, StandardReadableFormat.UNCACHED_SIGNAL)
        super().__init__(name=name)


class IVStates(StandardReadable):
    """The scan states of an `IVReadout` made with `states_apart`, read on their own."""

    def __init__(self, readout: IVReadout) -> None:
        self.add_readables(readout.state_signals, StandardReadableFormat.UNCACHED_SIGNAL)
        super().__init__(name=f"{readout.name}_states")


def _keys(slot: ModuleSlot, readout: str) -> IVKeys:
    return IVKeys(
        bias=slot.bias.name,
        current=slot.leakage_current.name,
        temperature=slot.temperature.name if hasattr(slot, "temperature") else None,
        state=f"{readout}-slot{slot.number}_state",
    )


@documented
def iv_scan(
    stand: TestStand,
    slots: SlotSelection = None,
    start: float = 0.0,
    stop: float = 200.0,
    step: float = 5.0,
    settle: float = 1.0,
    compliance: float | None = None,
    *,
    stop_at_breakdown: bool = False,
    stage: str = "TEST",
    operator: str | None = None,
    md: dict[str, Any] | None = None,
) -> MsgGenerator[str]:
    """IV scan of the chosen slots together, `start`→`stop` V in `step`s, ending at 0 V.

    Voltages are magnitudes (the supply's polarity applies the sign). At each point every slot
    still measuring is set, waited for, settled `settle` s, and read; a point whose channel
    tripped (or hit its current limit) or had not settled is marked, not a valid point (see
    `check_points`). A slot whose current reaches `compliance` (default: the stand's) stops
    there and ramps down; with
    `stop_at_breakdown`, so does a slot whose current jumps by its sensor's breakdown ratio.
    Whatever way the scan ends, every scanned slot is brought back to 0 V. Returns the run uid.

    Parameters
    ----------
    slots : int, str or list of int, optional
        Slot numbers: 3, [1, 2] or "1-4,7" (default: every slot holding a module).
    {range}
    compliance : float, optional
        Current at which a slot stops, A (default and maximum: the stand's limits.compliance).
    stop_at_breakdown : bool
        Also stop a slot whose current jumps by its sensor's breakdown ratio.
    {closing}
    """
    chosen = module_slots(stand, slots)
    voltages = iv_voltages(start, stop, step)
    check_bias(stand, chosen, max(voltages))
    compliance = check_compliance(stand, compliance)
    if settle < 0:
        raise PlanArgumentError(f"settle {settle} s: give a settle time >= 0 s")
    readout = IVReadout(chosen, states_apart=True)
    states = IVStates(readout)
    tolerances = {
        s.number: criteria_for(slot_info(stand, s).sensor).voltage_tolerance for s in chosen
    }
    metadata = run_metadata(
        stand,
        chosen,
        "iv",
        stage,
        operator,
        md,
        iv=IVSettings(start=start, stop=stop, step=step, settle=settle, compliance=compliance),
        iv_keys={str(s.number): _keys(s, readout.name) for s in chosen},
    )
    criteria = (
        {s.number: criteria_for(slot_info(stand, s).sensor) for s in chosen}
        if stop_at_breakdown
        else None
    )

    def scan() -> MsgGenerator[str]:
        uid = yield Msg("open_run", **metadata)
        progress.begin("iv_scan", len(voltages))
        try:
            return (yield from points(str(uid)))
        finally:
            progress.end()

    def points(uid: str) -> MsgGenerator[str]:
        yield from switch_on(chosen)
        timeouts: dict[int, float] = {}
        yield from await_all(partial(check_range, chosen, voltages, timeouts))
        active = list(chosen)
        history: dict[int, list[tuple[float, float]]] = {s.number: [] for s in chosen}
        stopped: list[ModuleSlot] = []
        tripped: dict[int, IVState] = {}
        for point, voltage in enumerate(voltages, 1):
            yield Msg("checkpoint")
            progress.point(point, voltage)
            readout.set_voltage(voltage)
            tripped = {}
            yield from await_all(partial(step_slots, active, voltage, timeouts, tripped))
            for number, state in tripped.items():
                readout.states[number](state)
            active = [s for s in active if s.number not in tripped]
            if settle:
                progress.wait("settling", settle)
                yield Msg("sleep", None, settle)
                progress.waited()
            yield Msg("create", None, name="primary")
            reading = yield Msg("read", readout)
            marks: dict[int, IVState] = {}
            yield from await_all(partial(check_points, active, voltage, reading, tolerances, marks))
            for slot in active:
                readout.states[slot.number](marks.get(slot.number, "measuring"))
            yield Msg("read", states)
            yield Msg("save")
            if reading is None:  # a rewind interrupted the read: read again for the checks
                reading = yield from read_now(readout)
            stopped = [s for s in active if marks.get(s.number) in STOP_REASONS]
            for slot in active:
                if slot.number in marks:
                    continue
                current = abs(reading[slot.leakage_current.name]["value"])
                history[slot.number].append((voltage, current))
                reason = _stop_reason(
                    current, compliance, history[slot.number], criteria, slot.number
                )
                if reason is not None:
                    readout.states[slot.number](reason)
                    stopped.append(slot)
            if stopped:
                yield from await_all(*(partial(zero_setpoint, s.hv_channel) for s in stopped))
                active = [s for s in active if s not in stopped]
            if not active:
                break
        if stopped or tripped:  # record why the last points stopped them
            yield Msg("create", None, name="primary")
            yield Msg("read", readout)
            yield Msg("read", states)
            yield Msg("save")
        for slot in active:
            readout.states[slot.number]("done")
        yield Msg("close_run")
        return uid

    plan = bpp.baseline_wrapper(scan(), instruments(stand))
    uid: str = yield from hv_safe(plan, chosen)
    return uid


async def check_range(
    slots: Sequence[ModuleSlot], voltages: Sequence[float], timeouts: dict[int, float]
) -> None:
    """Check the whole scan range against each slot's and channel's limits once, and fill in
    each slot's timeout for the largest step, from 0 V to the first point included (at its
    channel's ramp rate)."""
    top = max(voltages)
    step = max(abs(b - a) for a, b in itertools.pairwise([0.0, *voltages]))
    for slot in slots:
        await slot.check_bias(top)
        await slot.hv_channel.check_voltage(top)
        timeouts[slot.number] = await slot.hv_channel.ramp_timeout(0.0, step)


async def step_slots(
    slots: Sequence[ModuleSlot],
    voltage: float,
    timeouts: dict[int, float],
    tripped: dict[int, IVState],
) -> None:
    """Ramp the slots to `voltage` together with their channels' `ramp_to` (the range was
    checked before the first step). A slot whose channel trips or switches off on the way
    (`RampFailed`) is recorded in `tripped` ("compliance" for a current trip, else "error") and
    the others go on; any other failure (a lost link) ends the scan."""
    results = await asyncio.gather(
        *(s.hv_channel.ramp_to(voltage, timeouts[s.number]) for s in slots),
        return_exceptions=True,
    )
    for slot, result in zip(slots, results, strict=True):
        if result is None:
            continue
        if not isinstance(result, RampFailed):
            raise result
        status = await slot.hv_channel.read_status()
        tripped[slot.number] = stop_state(status)
        why = ", ".join(sorted(status.faults)) or str(result)
        verb = "tripped" if status.faults else "stopped"
        log.warning("slot %d %s on the way to %g V: %s", slot.number, verb, voltage, why)


async def check_points(
    slots: Sequence[ModuleSlot],
    voltage: float,
    reading: dict[str, Any] | None,
    tolerances: dict[int, float],
    marks: dict[int, IVState],
) -> None:
    """Mark in `marks` the slots whose point just read is not a valid measurement: a channel
    that tripped or is off (its stop state), one held by its current limit ("compliance"), and
    one that had not settled, still ramping or its bias more than its tolerance (V) from
    `voltage` ("unsettled": the slot goes on). `reading` None (a rewind): the bias is read now."""
    statuses = await asyncio.gather(*(s.hv_channel.read_status() for s in slots))
    for slot, status in zip(slots, statuses, strict=True):
        number = slot.number
        if status.faults or not status.on:
            marks[number] = stop_state(status)
            why = ", ".join(sorted(status.faults)) or "switched off"
            log.warning("slot %d tripped at %g V: %s", number, voltage, why)
        elif status.in_compliance:
            marks[number] = "compliance"
            log.warning("slot %d reached its channel's current limit at %g V", number, voltage)
        else:
            bias = reading[slot.bias.name]["value"] if reading else await slot.bias.get_value()
            if status.ramping or abs(abs(bias) - voltage) > tolerances[number]:
                marks[number] = "unsettled"
                log.warning(
                    "slot %d had not settled at %g V (read %.1f V): point marked unsettled",
                    number,
                    voltage,
                    abs(bias),
                )


def _stop_reason(
    current: float,
    compliance: float,
    history: list[tuple[float, float]],
    criteria: dict[int, Any] | None,
    number: int,
) -> IVState | None:
    """Why a slot stops after this point (None: it goes on)."""
    if current >= COMPLIANCE_FRACTION * compliance:
        return "compliance"
    if criteria and len(history) > 1:
        voltages, currents = zip(*history, strict=True)
        if find_breakdown(list(voltages), list(currents), criteria[number]) is not None:
            return "breakdown"
    return None
