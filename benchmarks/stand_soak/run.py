"""`run_soak(SoakOptions(...))`: the whole stand under faults; returns the figures (a dict).

The soak starts the stand's processes (`stack.Stack`), keeps the queue busy (`queue`), injects
the faults of `faults` one after the other with normal running between them, recovers the
stand after each trip as an operator would (`recovery.Recovery`), keeps queueing until
`duration` has passed, then drains and checks (`checks`).

Long version: rounds of every fault in the first half, each injected while a plan runs where
that matters, each trip followed by the full recovery; the second half runs without faults.
Short version (`short`): the faults that must not trip the
stand (link faults on every instrument at once, Tiled, InfluxDB) while the queue runs, then the
queue worker killed during a plan, then, while its environment is closed for the recovery, the
lid, the humidity spike and the HV cable one after the other, each with HV raised first by the
soak as the operator holding control (RUN, heartbeats, 50 V on four channels) and each reset
before the next, and one reopening of the environment: one recovery instead of four.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from stand_soak import faults, finish, observe, stack
from stand_soak.queue import QueueDriver
from stand_soak.recovery import Recovery

#: V on four HV channels, raised by the operator before each trip chained in the short version.
CHAINED_HV = 50.0


@dataclass
class SoakOptions:
    duration: float = 7200.0  # s of wall time (at least every fault once, however short)
    sample_period: float = 60.0  # s between process samples
    speed: float = 100.0
    seed: int = 1
    short: bool = False  # every fault once, one recovery (see the module docstring)
    gap: float = 60.0  # s of normal running before each fault (seeded jitter ±50 %)
    warmup: float | None = None  # s excluded from growth (default min(600, a fifth of it))
    directory: Path | None = None
    keep: bool = False  # keep the directory (logs, data) afterwards


class Soak:
    def __init__(self, options: SoakOptions) -> None:
        self.options = options
        self.rng = random.Random(options.seed)
        self.killed_tiled: int | None = None
        self.records: list[faults.FaultRecord] = []
        self.unprovoked: list[str] = []
        self.service_watches: list[threading.Thread] = []

    def tiled_answers(self) -> bool:
        return finish.tiled_answers(self.stack.data_dir)

    # ---- the run ----
    def run(self) -> dict[str, Any]:
        o = self.options
        stack.ca_environment()
        from caproto.threading.client import Context

        directory = o.directory or Path(tempfile.mkdtemp(prefix="teststand-soak-"))
        directory.mkdir(parents=True, exist_ok=True)
        self.stack = stack.Stack(directory, o.speed)
        began = time.time()
        try:
            self.stack.start()
            self.context = Context()
            try:
                figures = self._run()
            finally:
                self.context.disconnect()
        finally:
            self.stack.stop()
            if not o.keep:
                shutil.rmtree(directory, ignore_errors=True)
        figures["wall_s"] = round(time.time() - began, 1)
        return figures

    def _run(self) -> dict[str, Any]:
        o = self.options
        self.states = observe.StateLog(self.context, stack.PREFIX)
        self.points = observe.PointRecorder(self.context, stack.PREFIX, tuple(finish.WATCHED))
        self.points.start()
        self.operator = self.stack.operator()
        opened = time.monotonic()
        self.operator.open_environment(timeout=300)
        opened_s = time.monotonic() - opened
        self.poller = poller = observe.StatePoller(self.states)
        self.hv = hv = observe.HvSampler(self.stack.sims, 0.5)
        processes = observe.ProcessSampler(self.stack.pids, o.sample_period)
        self.driver = QueueDriver(self.operator, lambda: not self.tripped)
        self.recovery = Recovery(
            self.context, self.operator, self.driver, self.states, self.stack.worker_pid
        )
        for thread in (poller, hv, processes, self.driver):
            thread.start()
        self.start = time.time()
        if o.short:
            self._short()
        else:
            self._long()
        while time.time() - self.start < o.duration:
            self._wait(min(30.0, o.duration - (time.time() - self.start)))
        end = time.time()
        for watch in self.service_watches:
            watch.join()
        figures = finish.Finish(self, hv, processes).figures(self.start, end)
        figures["environment_open_s"] = round(opened_s, 1)
        if o.keep:  # every process sample, for a closer look at a growth
            taken = {role: [asdict(s) for s in ss] for role, ss in processes.samples.items()}
            (self.stack.directory / "samples.json").write_text(json.dumps(taken))
        return figures

    @property
    def tripped(self) -> bool:
        return self.states.state in ("SAFE", "ERROR")

    def _limits(self) -> tuple[float, float]:
        return stack.INTERLOCKS["link_timeout"], stack.INTERLOCKS["heartbeat_timeout"]

    def _long(self) -> None:
        """Rounds of every fault during the first half (at least one whole round); the second
        half runs quietly, so that the processes restarted by the faults (the worker, Tiled)
        live long enough to show a trend too."""
        link, heartbeat = self._limits()
        per_round = len(faults.schedule(self.options.seed, 1, link, heartbeat))
        for index, fault in enumerate(faults.schedule(self.options.seed, 100, link, heartbeat)):
            past_half = time.time() - self.start > self.options.duration / 2
            if index >= per_round and past_half:
                break
            self._wait(self.options.gap * self.rng.uniform(0.5, 1.5))
            self._inject(fault)
            self.recovery.recover()

    def _short(self) -> None:
        link, heartbeat = self._limits()
        running, killer, chained = faults.short_schedule(self.options.seed, link, heartbeat)
        for fault in running:
            self._wait(self.options.gap)
            self._inject(fault)
        for watch in self.service_watches:  # Tiled belongs to the worker: recovered first
            watch.join()
        self._wait(self.options.gap)
        self._inject(killer)
        self.recovery.take_over()
        try:
            self.recovery.reset()  # the worker's death tripped it
            for fault in chained:
                raised = time.time()
                try:
                    self.recovery.raise_hv(CHAINED_HV)
                except Exception as exc:  # the fault still comes, with HV where it is
                    self.unprovoked.append(f"raising HV before {fault.name}: {exc}")
                if not self._hv_seen_up(raised):
                    self.unprovoked.append(f"HV not seen up before {fault.name} within 10 s")
                self._inject(fault)
                self.recovery.reset()
        finally:
            self.recovery.give_back()
        self._wait(self.options.gap)

    def _hv_seen_up(self, since: float, timeout: float = 10.0) -> bool:
        """Wait until the HV sampler has seen HV above `finish.HV_LIMIT` after `since`: the
        checks count a trip's ramp down only from a sample of HV up just before it (a quick
        trip on a loaded machine came before the sampler's next look, and none was counted)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(t >= since and volts > finish.HV_LIMIT for t, volts in self.hv.samples[-4:]):
                return True
            time.sleep(0.05)
        return False

    def _wait(self, seconds: float) -> None:
        """Normal running; a trip nobody caused (no fault injected) is recovered and noted."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
            if self.tripped:
                reason = self.states.transitions[-1][2]
                self.unprovoked.append(
                    f"at {time.time() - self.start:.0f} s: {self.states.state}: {reason}"
                )
                self.recovery.recover()

    def _inject(self, fault: faults.Fault) -> None:
        if fault.needs_run:
            deadline = time.monotonic() + 120
            while self.states.state != "RUN" and time.monotonic() < deadline:
                time.sleep(0.2)
        record = faults.FaultRecord(fault.name, fault.outcome, time.time(), self.start)
        if fault.needs_run and self.states.state != "RUN":
            record.notes.append(f"injected in {self.states.state}: no plan ran within 120 s")
        if self.records:
            self.records[-1].window_end = min(self.records[-1].window_end, record.injected)
        try:
            fault.inject(self)
        except Exception as exc:
            record.notes.append(f"injection failed: {exc}")
        time.sleep(fault.hold)
        fault.clear(self)
        record.cleared = time.time()
        self.records.append(record)
        if fault.outcome == "service":
            watch = threading.Thread(target=self._watch_service, args=(fault, record), daemon=True)
            watch.start()
            self.service_watches.append(watch)
            return
        deadline = time.monotonic() + fault.reaction
        while time.monotonic() < deadline:
            if fault.outcome == "trip" and self.states.state in fault.states:
                break
            time.sleep(0.1)
        faults.judge(fault, record, self.states.since(record.injected), None)
        print(f"soak: {record.figures()}", flush=True)

    def _watch_service(self, fault: faults.Fault, record: faults.FaultRecord) -> None:
        """Until the service answers again (or its reaction time passed); judged then."""
        assert fault.recovered is not None
        deadline = record.cleared + fault.reaction
        recovered_at = None
        while time.time() < deadline:
            if fault.recovered(self):
                recovered_at = time.time()
                break
            time.sleep(0.5)
        end = min(record.window_end, recovered_at or deadline)
        transitions = [t for t in self.states.since(record.injected) if t[0] <= end]
        faults.judge(fault, record, transitions, recovered_at)
        print(f"soak: {record.figures()}", flush=True)


def run_soak(options: SoakOptions) -> dict[str, Any]:
    return Soak(options).run()
