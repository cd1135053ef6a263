"""Bluesky plans of the stand: IV scans, ramps, temperature control, qualification.

Every plan takes the built `TestStand` first and checks its arguments before any hardware moves
(`PlanArgumentError`); every plan that raises HV brings it back to 0 V on every exit path.
`STAND_PLANS` are the plans an operator may run (the profile binds them to the stand).
"""

from teststand.plans.binding import bind_plans
from teststand.plans.common import HVSafetyError, PlanArgumentError, hv_zero
from teststand.plans.hv import hv_off, hv_ramp
from teststand.plans.iv import iv_scan
from teststand.plans.iv_smu import keithley_iv_scan
from teststand.plans.pixel import (
    bias_scan_with_detector,
    source_scan,
    threshold_scan,
    trim_equalisation,
)
from teststand.plans.qualification import StandNotReady, module_qualification
from teststand.plans.stability import long_term_stability
from teststand.plans.suspenders import install_suspenders, stand_suspenders
from teststand.plans.temperature import set_temperature
from teststand.plans.thermal import thermal_cycle

STAND_PLANS = {
    "iv_scan": iv_scan,
    "keithley_iv_scan": keithley_iv_scan,
    "hv_ramp": hv_ramp,
    "hv_off": hv_off,
    "set_temperature": set_temperature,
    "thermal_cycle": thermal_cycle,
    "long_term_stability": long_term_stability,
    "module_qualification": module_qualification,
    "threshold_scan": threshold_scan,
    "trim_equalisation": trim_equalisation,
    "source_scan": source_scan,
    "bias_scan_with_detector": bias_scan_with_detector,
}

__all__ = [
    "STAND_PLANS",
    "HVSafetyError",
    "PlanArgumentError",
    "StandNotReady",
    "bias_scan_with_detector",
    "bind_plans",
    "hv_off",
    "hv_ramp",
    "hv_zero",
    "install_suspenders",
    "iv_scan",
    "keithley_iv_scan",
    "long_term_stability",
    "module_qualification",
    "set_temperature",
    "source_scan",
    "stand_suspenders",
    "thermal_cycle",
    "threshold_scan",
    "trim_equalisation",
]
