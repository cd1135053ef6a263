"""What the soak watches while it runs, each in a thread of its own.

- `StateLog`: every transition of the IOC's `STATE` (with its reason), by a CA monitor.
- `HvSampler`: the simulators' own HV (every CAEN channel's VMON, the SMU's source voltage),
  the truth whatever the IOC or a client believe.
- `ProcessSampler`: RSS, open descriptors, threads and CPU of every process, by role (psutil).
- `PointRecorder`: every update of a few PVs, as a CA client sees them (the monitor must store
  each one in InfluxDB).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psutil


class _Periodic(threading.Thread):
    def __init__(self, period: float, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.period = period
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            began = time.monotonic()
            try:
                self.sample()
            except Exception as exc:  # a sample lost is reported, the soak goes on
                self.errors.append(f"{time.time():.1f}: {exc!r}")
            self.halt.wait(max(0.0, self.period - (time.monotonic() - began)))

    errors: list[str]

    def sample(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self.halt.set()
        self.join(30)


class StateLog:
    """Transitions of `PREFIX:STATE` as (time.time(), state, reason)."""

    def __init__(self, context: Any, prefix: str) -> None:
        from caproto import ChannelType

        self.transitions: list[tuple[float, str, str]] = []
        self.lock = threading.Lock()
        self.reason = ""
        self.state_pv, self.reason_pv = context.get_pvs(prefix + "STATE", prefix + "STATE:REASON")
        self.state_pv.wait_for_connection(timeout=30)
        self.reason_pv.wait_for_connection(timeout=30)
        self._subs = [
            self.reason_pv.subscribe(data_type=ChannelType.CHAR),
            self.state_pv.subscribe(data_type=ChannelType.TIME_STRING),
        ]
        self._subs[0].add_callback(self._on_reason)
        self._subs[1].add_callback(self._on_state)

    def _on_reason(self, sub: Any, response: Any) -> None:
        """The reason may follow its state: it completes a transition of the last second."""
        reason = bytes(response.data).rstrip(b"\0").decode(errors="replace")
        with self.lock:
            previous, self.reason = self.reason, reason
            if self.transitions and time.time() - self.transitions[-1][0] < 1.0:
                t, state, recorded = self.transitions[-1]
                if recorded == previous:  # not yet its own reason (never a later one's)
                    self.transitions[-1] = (t, state, reason)

    def _on_state(self, sub: Any, response: Any) -> None:
        raw = response.data[0]
        state = raw.decode() if isinstance(raw, bytes) else str(raw)
        with self.lock:
            if not self.transitions or self.transitions[-1][1] != state:
                self.transitions.append((time.time(), state, self.reason))

    def poll(self) -> None:
        """A read of STATE: a monitor update lost by a loaded client (it happens) is made up
        for here (called every half second by `StatePoller`)."""
        from caproto import ChannelType

        raw = self.state_pv.read(data_type=ChannelType.STRING, timeout=5).data[0]
        state = raw.decode() if isinstance(raw, bytes) else str(raw)
        with self.lock:
            if not self.transitions or self.transitions[-1][1] != state:
                self.transitions.append((time.time(), state, self.reason))

    @property
    def state(self) -> str:
        with self.lock:
            return self.transitions[-1][1] if self.transitions else "?"

    def since(self, t: float) -> list[tuple[float, str, str]]:
        with self.lock:
            return [entry for entry in self.transitions if entry[0] >= t]

    def state_at(self, t: float) -> str:
        with self.lock:
            before = [entry for entry in self.transitions if entry[0] <= t]
        return before[-1][1] if before else "?"

    def close(self) -> None:
        for sub in self._subs:
            sub.clear()


class StatePoller(_Periodic):
    def __init__(self, log: StateLog, period: float = 0.5) -> None:
        super().__init__(period, "soak-state")
        self.log = log
        self.errors = []

    def sample(self) -> None:
        self.log.poll()


class HvSampler(_Periodic):
    """The largest HV output of the stand (CAEN VMON, SMU source voltage with output on)."""

    def __init__(self, sims: Any, period: float = 0.25) -> None:
        super().__init__(period, "soak-hv")
        self.sims = sims
        self.samples: list[tuple[float, float]] = []
        self.errors = []

    def sample(self) -> None:
        hv = self.sims.status("hv")
        volts = [abs(float(channel["vmon"])) for channel in hv["channels"]]
        smu = self.sims.status("smu")
        if smu.get("output"):
            volts.append(abs(float(smu["point"]["voltage"])))
        self.samples.append((time.time(), max(volts)))


@dataclass
class ProcessSample:
    t: float
    pid: int
    rss_mb: float
    fds: int
    threads: int
    cpu_s: float


class ProcessSampler(_Periodic):
    """Every process of `pids()` (role → pid or None) every `period` s."""

    def __init__(self, pids: Any, period: float) -> None:
        super().__init__(period, "soak-psutil")
        self.pids = pids
        self.samples: dict[str, list[ProcessSample]] = {}
        self.errors = []

    def sample(self) -> None:
        now = time.time()
        for role, pid in self.pids().items():
            if pid is None:
                continue
            try:
                process = psutil.Process(pid)
                with process.oneshot():
                    cpu = process.cpu_times()
                    taken = ProcessSample(
                        now,
                        pid,
                        process.memory_info().rss / 2**20,
                        process.num_fds(),
                        process.num_threads(),
                        cpu.user + cpu.system,
                    )
            except psutil.Error:
                continue
            self.samples.setdefault(role, []).append(taken)


@dataclass
class PointRecorder:
    """Every update of `suffixes` under `prefix` as (PV timestamp, value), by suffix."""

    context: Any
    prefix: str
    suffixes: tuple[str, ...]
    seen: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    def start(self) -> None:
        pvs = self.context.get_pvs(*[self.prefix + s for s in self.suffixes])
        self._subs = []
        self._callbacks = []  # caproto keeps only weak references to them
        for suffix, pv in zip(self.suffixes, pvs, strict=True):
            pv.wait_for_connection(timeout=30)
            updates = self.seen.setdefault(suffix, [])

            def record(_sub: Any, response: Any, updates: list[Any] = updates) -> None:
                updates.append((response.metadata.timestamp, float(response.data[0])))

            sub = pv.subscribe(data_type="time")
            sub.add_callback(record)
            self._callbacks.append(record)
            self._subs.append(sub)

    def stop(self) -> None:
        for sub in self._subs:
            sub.clear()
