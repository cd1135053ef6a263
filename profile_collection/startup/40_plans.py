"""The stand's plans (`teststand.plans.STAND_PLANS`) with the stand bound:
`iv_scan(slots="1-4", stop=150)`, `module_qualification(slots="1-8", stage="INITIAL_WARM")`; and
the suspenders that ramp HV down when the coldbox lid opens, the interlock trips, dry air fails or
the plates come near the dew point.

Only these plans are in the namespace: the queue server offers nothing else (no raw `mv` or
`abs_set` that could bypass the stand's limits).
"""

import gc

from teststand.plans import STAND_PLANS, bind_plans, install_suspenders

globals().update(bind_plans(stand, STAND_PLANS))  # noqa: F821 (10_stand.py)
suspenders = install_suspenders(RE, stand)  # noqa: F821
del STAND_PLANS, bind_plans, install_suspenders

# What the profile built lives as long as the session: out of the garbage collector's reach, a
# full collection scans only what the runs allocate (it held the RunEngine's loop 0.7 s on a
# loaded machine, with the plan's reads of the served stand waiting behind it).
gc.collect()
gc.freeze()
del gc
