"""`LiveClock`: seconds during which this process's event loop was running.

The watchdog judges silence (an instrument without an answer, a client without a heartbeat) by
this clock, not by wall-clock time: when the IOC itself is starved of CPU or stopped
(`kill -STOP`, a swapping machine), the instruments' answers and the clients' heartbeats wait
in its sockets, and a wall-clock gap would look like lost links and a hung client. The clock
advances by the time between the watchdog's ticks, at most `max_step` per tick: a stall of the
loop counts as `max_step`, a link really lost is still judged after `link_timeout` of running
time. Under a load that delays every tick beyond `max_step`, silence is judged later, never
sooner.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class LiveClock:
    """Call it for the present running time (s); `tick()` at least every `max_step` s."""

    def __init__(self, max_step: float, source: Callable[[], float] = time.monotonic) -> None:
        self.max_step = max_step
        self.source = source
        self._last = source()
        self._base = 0.0

    def __call__(self) -> float:
        return self._base + min(self.source() - self._last, self.max_step)

    def tick(self) -> None:
        """Take in the time since the last tick (at most `max_step`)."""
        now = self.source()
        self._base += min(now - self._last, self.max_step)
        self._last = now


__all__ = ["LiveClock"]
