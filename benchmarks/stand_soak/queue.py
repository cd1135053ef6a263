"""Keeps the queue server busy: IV scans and module qualifications, back to back.

`QueueDriver` (a thread) tops the queue up to two items and starts it whenever the manager is
idle with the environment open, never on a tripped stand; `pause()` holds it while the soak
recovers the stand (closes and reopens the environment, resets the state machine). Item
outcomes and run uids are read from the queue's history at the end.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

IV_SCAN = ("iv_scan", {"slots": "1-8", "stop": 100.0, "step": 20.0, "settle": 0.0})
#: The plans, in turn: two short IV scans of every module, then a warm+cold qualification of
#: two slots (no thermal cycles); fast at speed 100.
PLANS: tuple[tuple[str, dict[str, Any]], ...] = (
    IV_SCAN,
    IV_SCAN,
    (
        "module_qualification",
        {
            "slots": "1-2",
            "stage": "INITIAL_WARM",
            "cycles": 0,
            "cold": -20.0,
            "temperature_settle": 30.0,
            "settle": 0.0,
        },
    ),
)


class QueueDriver(threading.Thread):
    def __init__(self, operator: Any, may_start: Any, period: float = 2.0) -> None:
        super().__init__(name="soak-queue", daemon=True)
        self.operator = operator
        self.may_start = may_start  # false while the stand is SAFE or ERROR
        self.period = period
        self.halt = threading.Event()
        self.paused = threading.Event()
        self.lock = threading.RLock()  # one user of the 0MQ client at a time
        self.plans = itertools.cycle(PLANS)
        self.submitted = 0
        self.errors: list[str] = []

    def run(self) -> None:
        while not self.halt.wait(self.period):
            if self.paused.is_set():
                continue
            try:
                with self.lock:
                    self._top_up()
            except Exception as exc:  # the manager busy, the worker gone: next round
                self.errors.append(f"{time.time():.1f}: {exc}")

    def _top_up(self) -> None:
        status = self.operator.status(history=0)
        if not status.environment_open:
            return
        for _ in range(2 - len(status.queue)):
            name, kwargs = next(self.plans)
            self.operator.submit(name, start=False, **kwargs)
            self.submitted += 1
        if status.manager_state == "idle" and self.may_start():
            self.operator.start()

    def pause(self) -> None:
        self.paused.set()
        with self.lock:  # wait for a round in progress
            pass

    def resume(self) -> None:
        self.paused.clear()

    def stop(self) -> None:
        self.halt.set()
        self.join(60)
