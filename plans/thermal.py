"""`thermal_cycle`: n cycles between a low and a high temperature, as one run, HV held at 0 V."""

from __future__ import annotations

import math
from typing import Any

from bluesky import Msg
from bluesky import preprocessors as bpp
from bluesky.utils import MsgGenerator

from teststand.plans.common import PlanArgumentError, hv_zero, instruments, run_metadata
from teststand.plans.temperature import check_temperature, make_context, occupied_slots, settings
from teststand.plans.thermal_steps import go_to, prepare, stay
from teststand.stand import TestStand


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
    tolerance : float
        A step is reached within this of its target, K (> 0).
    settle : float
        Time the temperature must stay within `tolerance` to count as reached, s (>= 0).
    interval : float
        Time between readings while moving or dwelling, s (> 0).
    chiller_offset : float
        The chiller runs at the target plus this, K (kept inside the chiller's limits).
    flush_rh : float
        Relative humidity that counts as flushed before cooling, %, in (0, 100).
    flush_timeout : float
        Longest dry-air flush before a cooling target is judged, s (> 0).
    timeout : float, optional
        Longest move to a target, s (default: the coldbox's estimate from its rate).
    stage : str
        The ITk test stage recorded with the run, e.g. "TEST", "INITIAL_WARM".
    operator : str, optional
        Who runs the test (default: $TESTSTAND_OPERATOR or the login name).
    md : dict, optional
        Extra start-document metadata.
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
            **settings(ctx),
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


__all__ = ["thermal_cycle"]
