"""Parameter descriptions that several plans share, written once: a plan's docstring names them
as `{range}`, `{thermal}` and `{closing}` and `@documented` fills them in (the queue server and
`help()` read the filled docstring)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

PARAMETERS = {
    "range": """start : float
        First bias, V (a magnitude).
    stop : float
        Last bias, V (a magnitude, included), at most each slot's limit (limits.max_bias).
    step : float
        Bias step, V; its sign must lead from `start` to `stop`.
    settle : float
        Wait after each step before reading, s (>= 0).""",
    "thermal": """tolerance : float
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
        Longest move to a target, s (default: the coldbox's estimate from its rate).""",
    "closing": """stage : str
        The ITk test stage recorded with the run, e.g. "TEST", "INITIAL_WARM".
    operator : str, optional
        Who runs the test (default: $TESTSTAND_OPERATOR or the login name).
    md : dict, optional
        Extra start-document metadata.""",
}


def documented(plan: F) -> F:
    """`plan` with the shared parameter descriptions filled into its docstring."""
    plan.__doc__ = (plan.__doc__ or "").format(**PARAMETERS)
    return plan
