"""Coldbox temperature: `set_temperature` (one step), and the argument checks and context it
shares with `thermal_cycle` (`teststand.plans.thermal`); the steps are in `thermal_steps`.

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
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

from bluesky import Msg
from bluesky import preprocessors as bpp
from bluesky.utils import MsgGenerator

from teststand import kinds
from teststand.plans.common import PlanArgumentError, instruments, run_metadata
from teststand.plans.docs import documented
from teststand.plans.thermal_steps import DewPointError, Thermal, ThermalReadout, go_to, prepare
from teststand.roles import CHILLER, COLDBOX, Chiller, Coldbox
from teststand.stand import ModuleSlot, TestStand


def occupied_slots(stand: TestStand) -> list[ModuleSlot]:
    """Every slot that holds a module, by number (may be none: an empty box can be cooled)."""
    return [stand.slots[n] for n, slot in sorted(stand.config.slots.items()) if slot.module]


def _coldbox_name(stand: TestStand) -> str:
    names = kinds.with_role(COLDBOX.name)
    for name, instrument in stand.config.instruments.items():
        if instrument.kind in names:
            return name
    raise PlanArgumentError(
        f"this stand has no coldbox (an instrument of kind {' or '.join(map(repr, names))} in "
        "the stand file); temperature plans need one"
    )


def thermal_devices(stand: TestStand) -> tuple[Coldbox, Chiller | None]:
    """The stand's coldbox (required) and chiller (optional)."""
    box = stand.role(COLDBOX)[_coldbox_name(stand)]
    chillers = list(stand.role(CHILLER).values())
    return box, chillers[0] if chillers else None


def check_temperature(stand: TestStand, value: float, what: str = "target") -> None:
    """Refuse a temperature outside the stand's limits.temperature or the coldbox's set point
    range (the instrument registry's)."""
    kind = kinds.get(stand.config.instruments[_coldbox_name(stand)].kind)
    tec_low, tec_high = kind.setpoint_range or (-math.inf, math.inf)
    limits = stand.config.limits.temperature
    low, high = max(limits.min, tec_low), min(limits.max, tec_high)
    if not (math.isfinite(value) and low <= value <= high):
        raise PlanArgumentError(
            f"{what} {value} °C is outside {low:g}..{high:g} °C, the stand's limits.temperature "
            f"({limits.min:g}..{limits.max:g} °C) within the TEC range "
            f"({tec_low:g}..{tec_high:g} °C); choose a temperature inside it"
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


def make_context(
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
    readers: list[Any] = [*occupied_slots(stand), coldbox]
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


def settings(ctx: Thermal) -> dict[str, Any]:
    return {
        "tolerance": ctx.tolerance,
        "settle": ctx.settle,
        "interval": ctx.interval,
        "chiller_offset": ctx.chiller_offset,
        "flush_rh": ctx.flush_rh,
        "dew_point_margin": ctx.margin,
    }


def thermal_run(
    ctx: Thermal,
    test: Literal["temperature", "thermal_cycle"],
    parameters: dict[str, Any],
    steps: Callable[[], MsgGenerator[None]],
    stage: str,
    operator: str | None,
    md: dict[str, Any] | None,
) -> MsgGenerator[str]:
    """One run of `test` over every occupied slot: `parameters` and the context's settings
    under the test's name in the start document; the box prepared, `steps`, then the reached
    state recorded. Returns the run uid."""
    metadata = run_metadata(
        ctx.stand,
        occupied_slots(ctx.stand),
        test,
        stage,
        operator,
        md,
        **{test: {**parameters, **settings(ctx)}},
    )

    def body() -> MsgGenerator[str]:
        uid = yield Msg("open_run", **metadata)
        yield from prepare(ctx)
        yield from steps()
        ctx.readout.set_phase("reached")
        yield from ctx.record()
        yield Msg("close_run")
        return str(uid)

    uid: str = yield from bpp.baseline_wrapper(body(), instruments(ctx.stand))
    return uid


@documented
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

    Parameters
    ----------
    target : float
        Plate temperature to reach, °C, inside limits.temperature and the coldbox's range.
    {thermal}
    {closing}
    """
    check_temperature(stand, target)
    ctx = make_context(
        stand, tolerance, settle, interval, chiller_offset, flush_rh, flush_timeout, timeout
    )
    return (
        yield from thermal_run(
            ctx, "temperature", {"target": target}, lambda: go_to(ctx, target), stage, operator, md
        )
    )


__all__ = [
    "DewPointError",
    "check_temperature",
    "occupied_slots",
    "set_temperature",
    "thermal_devices",
    "thermal_run",
]
