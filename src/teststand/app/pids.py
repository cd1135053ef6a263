"""Whether a process recorded earlier (its pid and its start time) still runs."""

from __future__ import annotations

import psutil  # type: ignore[import-untyped]

#: s: a recorded start time and the process' own may differ by this much (clock ticks, rounding).
START_TOLERANCE = 5.0


def start_time(pid: int | None = None) -> float:
    """The start time of process `pid` (default: this one), s since the epoch."""
    return float(psutil.Process(pid).create_time())


def process_running(pid: int, started: float) -> bool:
    """True while `pid` runs and is the process that started at `started` (not a later process
    given the same pid, and not a zombie)."""
    try:
        process = psutil.Process(pid)
        same = abs(process.create_time() - started) < START_TOLERANCE
        return bool(same and process.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False
