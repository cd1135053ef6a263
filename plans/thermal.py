"""`thermal_cycle`: n cycles between a low and a high temperature, as one run, HV held at 0 V."""

from __future__ import annotations

import math
from typing import Any

from bluesky.utils import MsgGenerator

from teststand.plans.common import PlanArgumentError, hv_zero
from teststand.plans.docs import documented
from teststand.plans.temperature import check_temperature, make_context, occupied_slots, thermal_run
from teststand.plans.thermal_steps import go_to, stay
from teststand.stand import TestStand


@documented
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

    Parameters
    ----------
    n : int
        Number of cycles (>= 1).
    low : float
        Cold temperature, °C.
    high : float
        Warm temperature, °C (above `low`).
    dwell : float
        Time held at each temperature, s (>= 0).
    end : float, optional
        Temperature the run ends at, °C (default: `high`).
    {thermal}
    {closing}
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
    ctx = make_context(
        stand, tolerance, settle, interval, chiller_offset, flush_rh, flush_timeout, timeout
    )
    slots = occupied_slots(stand)

    def cycles() -> MsgGenerator[None]:
        for cycle in range(1, n + 1):
            ctx.readout.set_cycle(cycle)
            yield from hv_zero(slots)
            for target in (low, high):
                yield from go_to(ctx, target)
                yield from stay(ctx, target, dwell)
        if final != high:
            yield from go_to(ctx, final)

    parameters = {"n": n, "low": low, "high": high, "dwell": dwell, "end": final}
    return (yield from thermal_run(ctx, "thermal_cycle", parameters, cycles, stage, operator, md))


__all__ = ["thermal_cycle"]
