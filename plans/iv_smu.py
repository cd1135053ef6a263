"""IV scan of one module on a source-measure unit (the Keithley), its output wired to the slot."""

from __future__ import annotations

from functools import partial
from typing import Any

from bluesky import Msg
from bluesky import preprocessors as bpp
from bluesky.utils import MsgGenerator
from ophyd_async.core import soft_signal_r_and_setter

from teststand.callbacks.iv_analysis import COMPLIANCE_FRACTION
from teststand.callbacks.schema import IVKeys, IVSettings
from teststand.plans.common import (
    PlanArgumentError,
    await_all,
    check_bias,
    check_compliance,
    instruments,
    module_slots,
    run_metadata,
)
from teststand.plans.docs import documented
from teststand.plans.iv import iv_voltages
from teststand.roles import SMU
from teststand.stand import TestStand


@documented
def keithley_iv_scan(
    stand: TestStand,
    slot: int,
    start: float = 0.0,
    stop: float = 200.0,
    step: float = 5.0,
    settle: float = 1.0,
    compliance: float | None = None,
    *,
    smu: str = "smu",
    stage: str = "TEST",
    operator: str | None = None,
    md: dict[str, Any] | None = None,
) -> MsgGenerator[str]:
    """IV scan of one module on the source-measure unit `smu` (its output wired to the slot's
    module), ending with the output at 0 V and off. Voltages are magnitudes; the SMU sources
    the negative (reverse) bias. Returns the run uid.

    Parameters
    ----------
    slot : int
        The slot whose module the SMU biases.
    {range}
    compliance : float, optional
        The SMU's current compliance, A (default and maximum: the stand's limits.compliance).
    smu : str
        The stand file's name of the source-measure unit.
    {closing}
    """
    (chosen,) = module_slots(stand, [slot])
    smus = stand.role(SMU)
    if smu not in smus:
        raise PlanArgumentError(
            f"{smu!r} is not a source-measure unit of this stand; its SMUs: "
            f"{', '.join(smus) or 'none'}"
        )
    device = smus[smu]
    voltages = iv_voltages(start, stop, step)
    check_bias(stand, [chosen], max(voltages))
    compliance = check_compliance(stand, compliance)
    state, set_state = soft_signal_r_and_setter(str, "measuring", name=f"iv-slot{slot}_state")
    keys = IVKeys(bias=device.voltage.name, current=device.current.name, state=state.name)
    metadata = run_metadata(
        stand,
        [chosen],
        "iv",
        stage,
        operator,
        md,
        iv=IVSettings(
            start=start, stop=stop, step=step, settle=settle, compliance=compliance, polarity="-"
        ),
        iv_keys={str(slot): keys},
    )

    def scan() -> MsgGenerator[str]:
        uid = yield Msg("open_run", **metadata)
        yield from await_all(partial(device.configure_iv, compliance))
        yield from await_all(device.on)
        for voltage in voltages:
            yield Msg("checkpoint")
            yield Msg("set", device, -voltage, group="iv")
            yield Msg("wait", None, group="iv")
            if settle:
                yield Msg("sleep", None, settle)
            yield Msg("trigger", device, group="iv-read")
            yield Msg("wait", None, group="iv-read")
            yield Msg("create", None, name="primary")
            reading = yield Msg("read", device)
            yield Msg("read", state)
            yield Msg("save")
            if abs(reading[device.current.name]["value"]) >= COMPLIANCE_FRACTION * compliance:
                set_state("compliance")
                yield Msg("create", None, name="primary")
                yield Msg("read", device)
                yield Msg("read", state)
                yield Msg("save")
                break
        else:
            set_state("done")
        yield Msg("close_run")
        return str(uid)

    def smu_to_zero() -> MsgGenerator[None]:
        yield Msg("set", device, 0.0, group="iv-zero")
        yield Msg("wait", None, group="iv-zero")
        yield from await_all(device.off)

    plan = bpp.baseline_wrapper(scan(), instruments(stand))
    uid: str = yield from bpp.finalize_wrapper(plan, smu_to_zero())
    return uid
