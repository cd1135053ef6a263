"""The stand's plans, with the stand bound (`iv_scan(slots="1-4", stop=150)`), and the suspenders
that ramp HV down when the coldbox lid opens, the interlock trips, dry air fails or the plates come
near the dew point.

Only these plans are in the namespace: the queue server offers nothing else (no raw `mv` or
`abs_set` that could bypass the stand's limits).
"""

from teststand.plans import hv_off, hv_ramp, iv_scan, keithley_iv_scan
from teststand.plans.binding import bind_plans
from teststand.plans.stability import long_term_stability
from teststand.plans.suspenders import install_suspenders
from teststand.plans.temperature import set_temperature, thermal_cycle

PLANS = {
    "iv_scan": iv_scan,
    "keithley_iv_scan": keithley_iv_scan,
    "hv_ramp": hv_ramp,
    "hv_off": hv_off,
    "set_temperature": set_temperature,
    "thermal_cycle": thermal_cycle,
    "long_term_stability": long_term_stability,
}
globals().update(bind_plans(stand, PLANS))  # noqa: F821 (10_stand.py)
suspenders = install_suspenders(RE, stand)  # noqa: F821
del bind_plans, install_suspenders, PLANS
