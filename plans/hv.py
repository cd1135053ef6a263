"""HV ramps of whole slots: `hv_ramp` to a bias at a rate, `hv_off` back to 0 V and off."""

from __future__ import annotations

from typing import Any

from bluesky import Msg
from bluesky import plan_stubs as bps
from bluesky import preprocessors as bpp
from bluesky.utils import MsgGenerator

from teststand.plans.common import (
    PlanArgumentError,
    SlotSelection,
    await_all,
    check_bias,
    hv_zero,
    module_slots,
    ramp,
    run_metadata,
    switch_on,
)
from teststand.stand import TestStand


def hv_ramp(
    stand: TestStand,
    slots: SlotSelection = None,
    target: float = 0.0,
    rate: float = 10.0,
    *,
    stage: str = "TEST",
    operator: str | None = None,
    md: dict[str, Any] | None = None,
) -> MsgGenerator[str]:
    """Ramp the slots' bias to `target` V (a magnitude) at `rate` V/s, as one run.

    The one plan that leaves HV up on a normal end, on purpose (`hv_off` brings it down); if the
    ramp fails or is aborted, every chosen slot goes back to 0 V. Returns the run uid.

    Parameters
    ----------
    slots : int, str or list of int, optional
        Slot numbers: 3, [1, 2] or "1-4,7" (default: every slot holding a module).
    target : float
        Bias to reach, V (a magnitude: the supply's polarity applies the sign), at most each
        slot's limit (limits.max_bias).
    rate : float
        Ramp rate up and down, V/s, in (0, 50].
    stage : str
        The ITk test stage recorded with the run, e.g. "TEST", "INITIAL_WARM".
    operator : str, optional
        Who runs the test (default: $TESTSTAND_OPERATOR or the login name).
    md : dict, optional
        Extra start-document metadata.
    """
    chosen = module_slots(stand, slots)
    check_bias(stand, chosen, target)
    if not 0 < rate <= 50:
        raise PlanArgumentError(f"rate {rate} V/s: give a ramp rate in (0, 50] V/s")
    metadata = run_metadata(stand, chosen, "hv_ramp", stage, operator, md, target=target, rate=rate)

    reached = False

    def body() -> MsgGenerator[str]:
        nonlocal reached
        uid = yield Msg("open_run", **metadata)
        for slot in chosen:
            yield Msg("set", slot.hv_channel.rate_up, rate, group="rates")
            yield Msg("set", slot.hv_channel.rate_down, rate, group="rates")
        yield Msg("wait", None, group="rates")
        yield from switch_on(chosen)
        yield from bps.trigger_and_read(chosen)
        yield from ramp(chosen, target)
        reached = True
        yield from bps.trigger_and_read(chosen)
        yield Msg("close_run")
        return str(uid)

    def zero_unless_reached() -> MsgGenerator[None]:
        if not reached:
            yield from hv_zero(chosen)

    uid: str = yield from bpp.finalize_wrapper(body(), zero_unless_reached)
    return uid


def hv_off(
    stand: TestStand,
    slots: SlotSelection = None,
    *,
    stage: str = "TEST",
    operator: str | None = None,
    md: dict[str, Any] | None = None,
) -> MsgGenerator[str]:
    """Bring the slots to 0 V, wait for it, and switch their channels off, as one run.

    Parameters
    ----------
    slots : int, str or list of int, optional
        Slot numbers: 3, [1, 2] or "1-4,7" (default: every slot holding a module).
    stage : str
        The ITk test stage recorded with the run, e.g. "TEST", "INITIAL_WARM".
    operator : str, optional
        Who runs the test (default: $TESTSTAND_OPERATOR or the login name).
    md : dict, optional
        Extra start-document metadata.
    """
    chosen = module_slots(stand, slots)
    metadata = run_metadata(stand, chosen, "hv_off", stage, operator, md)

    def body() -> MsgGenerator[str]:
        uid = yield Msg("open_run", **metadata)
        yield from bps.trigger_and_read(chosen)
        yield from hv_zero(chosen)
        yield from await_all(*(slot.hv_channel.off for slot in chosen))
        yield from bps.trigger_and_read(chosen)
        yield Msg("close_run")
        return str(uid)

    return (yield from body())
