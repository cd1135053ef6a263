"""Bringing the stand back after a trip, as an operator does.

The worker holds control of the IOC while its environment is open, and only the client with
control may reset a SAFE or ERROR stand: so the queue is left to stop (the tripped plan fails),
the environment is closed, the operator takes control over, resets once the cause has cleared
(RESET is refused until then), releases control, and reopens the environment (the worker claims
control again). A killed worker's environment is destroyed instead of closed (the RE Manager
would wait for its plan for ever), and its death tripped the stand: the same reset follows.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

from stand_soak import stack


class Recovery:
    def __init__(self, context: Any, operator: Any, driver: Any, states: Any, worker: Any) -> None:
        self.context = context
        self.worker = worker  # the worker's pid, None when it is gone
        self.operator = operator
        self.driver = driver
        self.states = states
        self.durations: list[float] = []
        self.problems: list[str] = []
        self._pvs: dict[str, Any] = {}

    def put(self, suffix: str, value: str | float, attempts: int = 3, wait: bool = True) -> None:
        """A put, with completion unless `wait` is false, text or number (a loaded IOC may take
        its time: retried)."""
        if suffix not in self._pvs:
            (self._pvs[suffix],) = self.context.get_pvs(stack.PREFIX + suffix)
        pv = self._pvs[suffix]
        data = value.encode() + b"\0" if isinstance(value, str) else [value]
        for attempt in range(attempts):
            try:
                pv.wait_for_connection(timeout=30)
                pv.write(data, wait=wait, timeout=60)
                return
            except Exception:
                if attempt == attempts - 1:
                    raise
                time.sleep(1.0)

    def status(self) -> Any:
        with self.driver.lock:
            return self.operator.status(history=0)

    @property
    def tripped(self) -> bool:
        return self.states.state in ("SAFE", "ERROR")

    def recover(self, attempts: int = 5, pause: float = 30.0) -> None:
        """After a trip or a killed worker: the queue running again on a reset stand. A loaded
        machine may leave the RE Manager or the IOC unanswering for a while: the recovery is
        tried again (`problems` says why), and gives up after `attempts`."""
        for attempt in range(attempts):
            try:
                self._recover()
                return
            except Exception as exc:
                self.problems.append(f"recovery attempt {attempt + 1}: {exc}")
                if attempt == attempts - 1:
                    raise
                time.sleep(pause)

    def _recover(self) -> None:
        if not self.tripped and self.status().environment_open:
            return
        began = time.monotonic()
        self.driver.pause()
        try:
            self.close_environment()
            if self.tripped:
                self.take_over(close=False)
                try:
                    self.reset()
                finally:
                    self.give_back(reopen=False)
            with self.driver.lock:
                self.operator.open_environment(timeout=300)
        finally:
            self.driver.resume()
        self.durations.append(time.monotonic() - began)

    def close_environment(self) -> None:
        """Closed by the worker, or destroyed when the worker is gone (the RE Manager does not
        notice a killed worker: it would wait for the running plan for ever)."""
        if self.worker() is None:
            with self.driver.lock:
                self.operator.destroy_environment(timeout=120)
            return
        stack.wait_for(lambda: self.status().manager_state == "idle", 180, "the queue to stop")
        with self.driver.lock:
            self.operator.close_environment(timeout=120)

    def take_over(self, close: bool = True) -> None:
        """Hold the stand as its operator (the environment closed first, the queue paused)."""
        self._began = time.monotonic()
        if close:
            self.driver.pause()
            self.close_environment()
        self.put("CONTROL:TAKEOVER", "pid=soak: the operator resets the stand after a fault")
        self._holding = threading.Event()
        self._holding.set()
        threading.Thread(target=self._heartbeats, name="soak-heartbeat", daemon=True).start()

    def raise_hv(self, volts: float, channels: range = range(4)) -> None:
        """As the operator holding control (beating since `take_over`): the stand to RUN and
        `channels` of the HV supply on at `volts`: a fault then finds HV up."""
        self.put("STATE:CMD", "READY soak: HV up before a fault")
        self.put("STATE:CMD", "RUN soak: HV up before a fault")
        for channel in channels:  # a refused put is not retried: the stand tripped meanwhile
            self.put(f"HV:CH{channel}:SWITCHED_ON", 1, attempts=1)
            self.put(f"HV:CH{channel}:SETPOINT", volts, attempts=1)

    def _heartbeats(self) -> None:
        """Every second while the soak holds control, without waiting for completion (a beat
        held up by a slow IOC must not hold up the next). A controlling client beats all the
        time: the IOC judges the age of its last beat as soon as the stand enters RUN."""
        while self._holding.is_set():
            with contextlib.suppress(Exception):  # a late beat: the watchdog judges
                self.put("CLIENT:HEARTBEAT", 1, attempts=1, wait=False)
            time.sleep(1.0)

    def reset(self) -> None:
        """RESET until the IOC takes it (the cause cleared): the stand back in INIT."""
        stack.wait_for(self._reset_once, 180, "a RESET the IOC accepts", 1.0)

    def _reset_once(self) -> bool:
        if not self.tripped:
            return True
        try:
            self.put("STATE:CMD", "RESET soak: the fault has cleared", attempts=1)
        except Exception:
            return False
        deadline = time.monotonic() + 5
        while self.tripped and time.monotonic() < deadline:
            time.sleep(0.1)
        return not self.tripped

    def give_back(self, reopen: bool = True) -> None:
        """Release control; reopen the environment (the worker claims it) and the queue."""
        self._holding.clear()
        self.put("CONTROL:RELEASE", "soak")
        if not reopen:
            return
        try:
            with self.driver.lock:
                self.operator.open_environment(timeout=300)
        finally:
            self.driver.resume()
        self.durations.append(time.monotonic() - self._began)
