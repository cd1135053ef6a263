"""Module qualification in the power order of QUALIFICATION.md, each test its own run.

1. interlock and lid checked, dry air on; 2. chiller running; 3. LV on; 4. warm IV; 5. cool
down; 6. cold IV; 7. thermal cycles; 8. final IV (warm); 9. shut down in reverse: HV to 0 V and
off, LV off, chiller to standby. Every run carries the same `qualification_uid`; whatever way
the qualification ends, HV goes to 0 V and LV off.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from functools import partial
from typing import Any

from bluesky import Msg
from bluesky import preprocessors as bpp
from bluesky.utils import MsgGenerator

from teststand.config import SensorType
from teststand.errors import TeststandError
from teststand.plans.common import (
    PlanArgumentError,
    SlotSelection,
    await_all,
    hv_zero,
    module_slots,
    slot_info,
)
from teststand.plans.hv import hv_off
from teststand.plans.iv import iv_scan
from teststand.plans.temperature import check_temperature, set_temperature, thermal_devices
from teststand.plans.thermal import thermal_cycle
from teststand.roles import LV_SUPPLY, Coldbox, LVOutput, LVSupply
from teststand.stand import ModuleSlot, TestStand

#: The cold stage that follows each warm stage of the ITk flow.
COLD_STAGE = {
    "INITIAL_WARM": "INITIAL_COLD",
    "POST_PARYLENE_WARM": "POST_PARYLENE_COLD",
    "FINAL_WARM": "FINAL_COLD",
}
#: IV range per sensor type (QUALIFICATION.md): end voltage and step, V.
IV_RANGE = {SensorType.PLANAR: (200.0, 5.0), SensorType.THREE_D: (100.0, 1.0)}


class StandNotReady(TeststandError):
    """The stand is not safe to start a qualification (lid, interlock); nothing was changed."""


async def check_box_closed(box: Coldbox) -> None:
    if not await box.lid_closed.get_value():
        raise StandNotReady(f"{box.name}: the lid is open; close it before the qualification")
    if not await box.interlock_ok.get_value():
        raise StandNotReady(f"{box.name}: the interlock is tripped; clear it first")


def _lv_outputs(stand: TestStand, slots: Sequence[ModuleSlot]) -> list[tuple[LVSupply, LVOutput]]:
    """The slots' LV outputs, each with its supply."""
    supplies = stand.role(LV_SUPPLY)
    outputs = []
    for slot in slots:
        ref = stand.config.slots[slot.number].lv
        if ref is not None:
            supply = supplies[ref.instrument]
            outputs.append((supply, supply.channels[ref.channel]))
    return outputs


def lv_on(
    stand: TestStand, slots: Sequence[ModuleSlot], voltage: float, current_limit: float
) -> MsgGenerator[None]:
    """Set, arm and switch on the slots' LV outputs (and switch their supplies on)."""
    outputs = _lv_outputs(stand, slots)
    for _, output in outputs:
        yield Msg("set", output.current_limit, current_limit, group="lv")
        yield Msg("set", output.voltage, voltage, group="lv")
    yield Msg("wait", None, group="lv")
    yield from await_all(*(output.on for _, output in outputs))
    supplies = {supply.name: supply for supply, _ in outputs}
    yield from await_all(*(supply.on for supply in supplies.values()))


def lv_off(stand: TestStand, slots: Sequence[ModuleSlot]) -> MsgGenerator[None]:
    """Disarm the slots' LV outputs (the supplies stay on for other slots)."""
    yield from await_all(*(output.off for _, output in _lv_outputs(stand, slots)))


def iv_by_sensor(
    stand: TestStand,
    slots: Sequence[ModuleSlot],
    stage: str,
    settle: float,
    operator: str | None,
    md: dict[str, Any],
) -> MsgGenerator[list[str]]:
    """One IV run per sensor type among the slots, each with its type's range and step."""
    uids = []
    for sensor, (stop, step) in IV_RANGE.items():
        group = [s for s in slots if slot_info(stand, s).sensor is sensor]
        if group:
            limit = min(slot_info(stand, s).max_bias for s in group)
            uid = yield from iv_scan(
                stand, [s.number for s in group], 0.0, min(stop, limit), step, settle,
                stage=stage, operator=operator, md=md,
            )  # fmt: skip
            uids.append(uid)
    return uids


def module_qualification(
    stand: TestStand,
    slots: SlotSelection = None,
    stage: str = "INITIAL_WARM",
    *,
    warm: float = 20.0,
    cold: float = -35.0,
    cycles: int = 10,
    dwell: float = 600.0,
    settle: float = 1.0,
    temperature_settle: float = 60.0,
    tolerance: float = 1.0,
    interval: float = 10.0,
    lv_voltage: float = 1.8,
    lv_current_limit: float = 2.0,
    operator: str | None = None,
    md: dict[str, Any] | None = None,
) -> MsgGenerator[dict[str, Any]]:
    """Qualify the modules of `slots`: warm IV (`stage`), cold IV (its cold stage), `cycles`
    thermal cycles between `cold` and `warm`, and a final warm IV (FINAL_WARM; skipped with
    `cycles=0`). Returns the qualification uid and the run uids of each step.

    Parameters
    ----------
    slots : int, str or list of int, optional
        Slot numbers: 3, [1, 2] or "1-4,7" (default: every slot holding a module).
    stage : str
        The warm stage the qualification starts at: INITIAL_WARM, POST_PARYLENE_WARM or
        FINAL_WARM (the cold IV takes its cold stage).
    warm : float
        Warm temperature, °C.
    cold : float
        Cold temperature, °C (below `warm`).
    cycles : int
        Thermal cycles between `cold` and `warm` (>= 0; 0 skips them and the final IV).
    dwell : float
        Time held at each temperature of a cycle, s.
    settle : float
        Wait after each IV step before reading, s.
    temperature_settle : float
        Time a temperature must hold within `tolerance` to count as reached, s.
    tolerance : float
        Temperature tolerance, K.
    interval : float
        Time between readings while the temperature moves, s.
    lv_voltage : float
        Module LV supply voltage, V, in (0, 32].
    lv_current_limit : float
        Module LV current limit, A, in (0, 10].
    operator : str, optional
        Who runs the test (default: $TESTSTAND_OPERATOR or the login name).
    md : dict, optional
        Extra start-document metadata of every run.
    """
    chosen = module_slots(stand, slots)
    if stage not in COLD_STAGE:
        raise PlanArgumentError(
            f"stage {stage!r}: a qualification starts at a warm stage, one of "
            f"{', '.join(COLD_STAGE)}"
        )
    check_temperature(stand, warm, "warm")
    check_temperature(stand, cold, "cold")
    if cold >= warm:
        raise PlanArgumentError(f"cold {cold} °C must be below warm {warm} °C")
    if cycles < 0:
        raise PlanArgumentError(f"cycles {cycles}: give 0 or more thermal cycles")
    if not (0 < lv_voltage <= 32 and 0 < lv_current_limit <= 10):
        raise PlanArgumentError(
            f"LV {lv_voltage} V / {lv_current_limit} A: give 0..32 V and 0..10 A (HMP4040)"
        )
    box, chiller = thermal_devices(stand)
    qualification_uid = str(uuid.uuid4())
    run_md = {**(md or {}), "qualification_uid": qualification_uid}
    temperature: dict[str, Any] = {
        "operator": operator,
        "tolerance": tolerance,
        "settle": temperature_settle,
        "interval": interval,
        "md": run_md,
    }
    runs: dict[str, list[str]] = {}

    def steps() -> MsgGenerator[dict[str, Any]]:
        yield from await_all(partial(check_box_closed, box))
        if chiller is not None:
            yield from await_all(chiller.start)
        uid = yield from set_temperature(stand, warm, stage=stage, **temperature)
        runs["warm_up"] = [uid]
        yield from lv_on(stand, chosen, lv_voltage, lv_current_limit)
        runs["warm_iv"] = yield from iv_by_sensor(stand, chosen, stage, settle, operator, run_md)
        uid = yield from set_temperature(stand, cold, stage=COLD_STAGE[stage], **temperature)
        runs["cool_down"] = [uid]
        runs["cold_iv"] = yield from iv_by_sensor(
            stand, chosen, COLD_STAGE[stage], settle, operator, run_md
        )
        if cycles:
            uid = yield from thermal_cycle(
                stand, cycles, cold, warm, dwell, end=warm, stage="THERMAL_CYCLES", **temperature
            )
            runs["thermal_cycles"] = [uid]
            runs["final_iv"] = yield from iv_by_sensor(
                stand, chosen, "FINAL_WARM", settle, operator, run_md
            )
        else:
            uid = yield from set_temperature(stand, warm, stage=stage, **temperature)
            runs["warm_up_end"] = [uid]
        uid = yield from hv_off(stand, [s.number for s in chosen], operator=operator, md=run_md)
        runs["hv_off"] = [uid]
        yield from lv_off(stand, chosen)
        if chiller is not None:
            yield from await_all(chiller.standby)
        return {"qualification_uid": qualification_uid, "runs": runs}

    def safe_state() -> MsgGenerator[None]:
        yield from hv_zero(chosen)
        yield from lv_off(stand, chosen)

    result: dict[str, Any] = yield from bpp.finalize_wrapper(steps(), safe_state)
    return result
