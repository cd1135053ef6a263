"""Bluesky plans of the stand: IV scans, ramps, temperature control, qualification.

Every plan takes the built `TestStand` first and checks its arguments before any hardware moves
(`PlanArgumentError`); every plan that raises HV brings it back to 0 V on every exit path.
"""

from .common import HVSafetyError, PlanArgumentError, hv_zero
from .hv import hv_off, hv_ramp
from .iv import iv_scan, keithley_iv_scan

__all__ = [
    "HVSafetyError",
    "PlanArgumentError",
    "hv_off",
    "hv_ramp",
    "hv_zero",
    "iv_scan",
    "keithley_iv_scan",
]
