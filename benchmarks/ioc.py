"""IOC benchmark: what serving the stand over Channel Access costs, measured side by side.

Run: `.venv/bin/python benchmarks/ioc.py [--seconds 60] [--clients 20]`. Loopback CA only.

1. The simulated stand of profile_collection/stand.yaml with every link paced at 9600 baud
   (`simulator.baud`), real-time speed. The IOC runs in this process (a thread with its own event
   loop, `--poll` period). First its poll loops run alone for `--seconds` (no CA server): the
   direct full-stand read rate is the slowest instrument's cycles per second (a full-stand
   update needs every instrument). Then it serves, and one client process monitors every PV:
   the full-stand update rate it sees is the lowest update rate over the readback PVs; `ratio`
   = CA / direct (goal >= 0.95). Monitor latency, on two probes toggled in the simulators
   every 0.37 s (`PROBES`): the coldbox's lid (the coldbox reads everything in one long status
   reply, about 270 ms at 9600 baud, longer than the poll period) and the chiller's running
   state (one short query); the client stamps each update; latency = arrival - toggle, p50 and
   p99 (goal: p99 <= the instrument's poll cycle + 50 ms, `latency_goal_ms`). Its baseline,
   measured in the first phase: the same toggles' delay to the poll loop's read of them
   (`link_latency_ms`: a change can wait two cycles of a long reply on the link alone);
   `ca_added_ms` = CA latency - link latency.
2. The same with `--clients` client processes at once (goal: rate and p99 within 5 %). The
   clients run on the last CPU, the IOC alone on the others (`cpus`), as if the clients were on
   another host; the simulators run on the clients' CPU ahead of them (SCHED_FIFO), as hardware
   would answer: sharing no CPU with the IOC. All clients count over the same window; the rate
   is their median. The latency is one client's (the watcher, at real-time priority below the
   simulators', as if on a host of its own); over all clients (`latency_all_clients_ms`) it
   also holds each client's wait for the others' handling of the same burst on their one CPU.
   The CPU of this process (the IOC) and of the clients per wall second is reported, and the
   IOC's own poll rate with the clients over that with one (`many_over_one_ioc_poll`).
3. `iv_scan` per-point cost on the instant simulators (no pacing, speed 1000), direct against
   over CA to an IOC process: `iv_ratio` = CA / direct.
The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from bluesky import RunEngine
from bluesky.run_engine import call_in_bluesky_event_loop

from teststand.app.demo import attach_safety
from teststand.app.ioc import StandIOC, open_ioc
from teststand.app.ioc.process import IocProcess, LoopbackCA, SimulatorProcess
from teststand.config import load_stand
from teststand.plans.iv import iv_scan
from teststand.stand import build

STAND = Path(__file__).parents[1] / "profile_collection" / "stand.yaml"
PREFIX = "BENCH:"
#: Latency probes: a readback PV, its instrument, the console lines that make it 1 and 0.
PROBES = {
    "COLDBOX:LID_CLOSED": ("coldbox", "coldbox call close_lid", "coldbox call open_lid"),
    "CHILLER:RUNNING": ("chiller", 'chiller call respond "START"', 'chiller call respond "STOP"'),
}
CLIENT = r"""
import asyncio, json, sys, time
from aioca import camonitor
seconds, probes, pvs = float(sys.argv[1]), sys.argv[2].split(","), sys.argv[3:]
counts = dict.fromkeys(pvs, 0)
seen = set()
arrivals = {probe: [] for probe in probes}
counting = False
def on(pv):
    def update(value):
        seen.add(pv)
        if counting:
            counts[pv] += 1
            if pv in arrivals:
                arrivals[pv].append((time.time(), int(value)))
    return update
async def main():
    global counting
    subs = [camonitor(pv, on(pv)) for pv in pvs]
    while len(seen) < len(pvs):
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)  # every client counts over the same window
    counting = True
    await asyncio.sleep(seconds)
    counting = False
    for sub in subs:
        sub.close()
asyncio.run(main())
print(json.dumps({"counts": counts, "arrivals": arrivals}))
"""


def stand_data(speed: float, baud: int | None) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(STAND.read_text())
    data["speed"] = speed
    for instrument in data["instruments"].values():
        instrument.setdefault("simulator", {})["baud"] = baud
    return data


class ThreadedIoc:
    """The IOC on its own event loop in a thread; the simulators in a process of their own (as
    instruments would be: they share no CPU time or GIL with the IOC)."""

    def __init__(self, data: dict[str, Any], poll: float, sims: SimulatorProcess) -> None:
        self.sims = sims
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.ioc: StandIOC = self.call(open_ioc(data, PREFIX, poll_period=poll))

    def call(self, coroutine: Any, timeout: float = 300) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def direct(self, seconds: float) -> tuple[dict[str, float], dict[str, list[float]]]:
        """The poll loops alone (no CA server): each instrument's cycles per second, and each
        probe's toggles' delays to the poll loop's read of them (the baseline of the CA latency:
        what the link itself costs; a watcher looks at the read values every 2 ms)."""
        poller = self.ioc.poller
        assert poller is not None
        reads: dict[str, list[list[Any]]] = {probe: [] for probe in PROBES}

        async def watch() -> None:
            last = {probe: self.ioc.served[probe].value for probe in PROBES}
            while True:
                for probe, seen in reads.items():
                    value = self.ioc.served[probe].value
                    if value != last[probe]:
                        last[probe] = value
                        seen.append([time.time(), int(value)])
                await asyncio.sleep(0.002)

        async def run() -> dict[str, float]:
            before = {name: g.stats.cycles for name, g in poller.groups.items()}
            tasks = [asyncio.ensure_future(poller.run()), asyncio.ensure_future(watch())]
            await asyncio.sleep(seconds)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            return {n: (g.stats.cycles - before[n]) / seconds for n, g in poller.groups.items()}

        running = asyncio.run_coroutine_threadsafe(run(), self.loop)
        time.sleep(1.0)  # the loops going
        toggles = toggle_probes(self.sims, seconds - 2.0)
        rates: dict[str, float] = running.result(seconds + 60)
        return rates, {probe: _latencies(toggles[probe], reads[probe]) for probe in PROBES}

    def serve(self) -> None:
        self.task = asyncio.run_coroutine_threadsafe(self.ioc.run(["127.0.0.1"]), self.loop)

    def stop(self) -> None:
        self.task.cancel()
        time.sleep(0.5)
        self.call(self.ioc.stand.close())


def measure_clients(
    ioc: ThreadedIoc, clients: int, seconds: float, readbacks: list[str], cpus: set[int]
) -> dict[str, Any]:
    """`clients` client processes on `cpus` (the set computed before this process was confined
    to the IOC's CPUs: a child computing its own would inherit that confinement). The rate is
    the clients' median. The latency is the first client's (the watcher): it runs at real-time
    priority, below the simulators', as if on a host of its own; on one shared CPU, a client's
    update otherwise waits for the other clients' handling of the same burst of updates. The
    latency over all clients is reported too (`latency_all_clients_ms`)."""
    pvs = [ioc.ioc.prefix + suffix for suffix in ioc.ioc.served]
    probes = ",".join(PREFIX + probe for probe in PROBES)
    script = [sys.executable, "-c", CLIENT, str(seconds), probes, *pvs]
    processes = [
        subprocess.Popen(
            script,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=lambda watcher=index == 0: _client_setup(cpus, watcher),
        )
        for index in range(clients)
    ]
    for process in processes:  # every client connected and monitoring
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    for process in processes:  # then all count at once
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    poller = ioc.ioc.poller
    assert poller is not None
    cycles_before = {name: group.stats.cycles for name, group in poller.groups.items()}
    cpu_before = _cpu_seconds()
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    toggles = toggle_probes(ioc.sims, seconds - 1.0)
    results = [
        json.loads(p.communicate(timeout=seconds + 120)[0].splitlines()[-1]) for p in processes
    ]
    wall = time.monotonic() - started
    poll_rate = min(g.stats.cycles - cycles_before[n] for n, g in poller.groups.items()) / wall
    ioc_cpu = (_cpu_seconds() - cpu_before) / wall
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    clients_cpu = (
        children.ru_utime + children.ru_stime - children_before.ru_utime - children_before.ru_stime
    ) / wall
    rates = [
        min(result["counts"][ioc.ioc.prefix + s] for s in readbacks) / seconds for result in results
    ]

    def latencies(of: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            probe: _percentiles(
                [
                    delay
                    for result in of
                    for delay in _latencies(toggles[probe], result["arrivals"][PREFIX + probe])
                ]
            )
            for probe in PROBES
        }

    return {
        "full_stand_rate_hz": round(statistics.median(rates), 3),
        "ioc_full_stand_poll_rate_hz": round(poll_rate, 3),  # the IOC's own, meanwhile
        "latency_ms": latencies(results[:1]),
        "latency_all_clients_ms": latencies(results),
        "ioc_process_cpu_per_wall_s": round(ioc_cpu, 2),
        "clients_cpu_per_wall_s": round(clients_cpu, 2),
        "pvs_per_client": len(pvs),
    }


def _client_setup(cpus: set[int], watcher: bool) -> None:
    """In a client process before it starts: its CPUs; the watcher's real-time priority (5,
    below the simulators' 10) when allowed."""
    os.sched_setaffinity(0, cpus)
    if watcher:
        with contextlib.suppress(PermissionError):
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(5))


def toggle_probes(sims: SimulatorProcess, seconds: float) -> dict[str, list[tuple[float, int]]]:
    """Toggle every probe every 0.37 s; per probe (time, state) of each toggle, taken when the
    simulator has answered (its state changed)."""
    toggles: dict[str, list[tuple[float, int]]] = {probe: [] for probe in PROBES}
    deadline = time.monotonic() + seconds
    state = 1
    while time.monotonic() < deadline:
        state = 1 - state
        for probe, (_, on, off) in PROBES.items():
            sims.ask(on if state else off)
            toggles[probe].append((time.time(), state))
        time.sleep(0.37)
    for _, on, _ in PROBES.values():
        sims.ask(on)
    return toggles


def _split_cpus() -> tuple[set[int], set[int]]:
    """(the IOC's CPUs, the clients' CPUs): the last CPU for the clients, as if they ran on
    another host (on a small machine, twenty client processes would otherwise starve the IOC's
    poll loops of CPU); all CPUs for both on a single-CPU machine."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return set(cpus), set(cpus)
    return set(cpus[:-1]), {cpus[-1]}


def _as_hardware(pid: int, cpus: set[int]) -> None:
    """Move the simulators off the IOC's CPU, ahead of the clients there (real-time priority
    when allowed): instruments answer at their own pace, sharing no CPU with the IOC nor with
    its clients. Threads the simulators start later inherit both."""
    for thread in Path(f"/proc/{pid}/task").iterdir():
        tid = int(thread.name)
        os.sched_setaffinity(tid, cpus)
        try:
            os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(10))
        except PermissionError:
            print("simulators at normal priority (not root): clients slow them", file=sys.stderr)


def _cpu_seconds() -> float:
    """CPU seconds of this process so far (the IOC thread and the benchmark; not the simulators)."""
    return time.process_time()


def _percentiles(delays: list[float]) -> dict[str, float | int | None]:
    delays = sorted(delays)
    if not delays:
        return {"p50": None, "p99": None, "samples": 0}
    return {
        "p50": round(1000 * delays[len(delays) // 2], 1),
        "p99": round(1000 * delays[int(len(delays) * 0.99)], 1),
        "samples": len(delays),
    }


def _latencies(toggles: list[tuple[float, int]], arrivals: list[list[Any]]) -> list[float]:
    """Each toggle's delay to the first update that shows its state."""
    found = []
    for (stamp, state), following in zip(toggles, [*toggles[1:], (float("inf"), -1)], strict=True):
        for arrival, value in arrivals:
            if stamp <= arrival < following[0] + 2.0 and value == state:
                found.append(arrival - stamp)
                break
    return found


def iv_costs(points: int, ca: LoopbackCA) -> dict[str, float]:
    """iv_scan seconds per point, direct and over CA, on the instant simulators."""
    data = stand_data(1000.0, None)
    stop = 10.0 * (points - 1)
    costs: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        stand_file = Path(tmp) / "stand.yaml"
        stand_file.write_text(yaml.safe_dump(data))
        RE = RunEngine()
        for mode in ("direct", "served"):
            if mode == "served":
                ioc = IocProcess(stand_file, PREFIX, ca=ca, log=Path(tmp) / "ioc.log").start()
                data = {**data, "server": {"prefix": PREFIX, "connect_timeout": 60.0}}
            stand = build(data)
            safety = attach_safety(RE, load_stand(data))  # over CA: the IOC's state machine
            try:
                RE(iv_scan(stand, [1, 2, 4], stop=stop, step=10, settle=0))  # warm-up
                started = time.perf_counter()
                RE(iv_scan(stand, [1, 2, 4], stop=stop, step=10, settle=0))
                costs[mode] = (time.perf_counter() - started) / points
            finally:
                if safety is not None:
                    safety.detach()
                call_in_bluesky_event_loop(stand.close())
                if mode == "served":
                    ioc.close()
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--poll", type=float, default=0.2)
    parser.add_argument("--points", type=int, default=11)
    args = parser.parse_args()
    ioc_cpus, client_cpus = _split_cpus()
    os.sched_setaffinity(0, ioc_cpus)
    ca = LoopbackCA.allocate(servers=2)  # the threaded IOC's port, the IOC process's
    os.environ.update(ca.server_environment(ca.lease()))
    logging.getLogger("caproto").setLevel(logging.ERROR)  # "High load. Batched ..." on a busy CPU
    folder = Path(tempfile.mkdtemp(prefix="teststand-ioc-bench-"))
    sims_file = folder / "sims.yaml"
    sims_file.write_text(yaml.safe_dump(stand_data(1.0, 9600)))
    # SIGTERM ends the run as Ctrl-C does: through the `finally` that stops the simulators
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("benchmarks/ioc.py: stopped (SIGTERM)"))
    sims = SimulatorProcess(sims_file, log=folder / "sims.log")
    try:
        _as_hardware(sims.process.pid, client_cpus)
        served = stand_data(1.0, 9600)
        served["sim"] = False
        for name, url in sims.urls.items():
            served["instruments"][name]["url"] = url
        ioc = ThreadedIoc(served, args.poll, sims)
        readbacks = [s for s, served in ioc.ioc.served.items() if served.readback]
        direct, link_delays = ioc.direct(args.seconds)
        ioc.serve()
        time.sleep(1.0)
        one = measure_clients(ioc, 1, args.seconds, readbacks, client_cpus)
        many = measure_clients(ioc, args.clients, args.seconds, readbacks, client_cpus)
        ioc.stop()
    finally:
        sims.stop()
        shutil.rmtree(folder, ignore_errors=True)
    direct_rate = min(direct.values())
    link = {probe: _percentiles(delays) for probe, delays in link_delays.items()}
    iv = iv_costs(args.points, ca)
    result = {
        "direct_rates_hz": {k: round(v, 3) for k, v in direct.items()},
        "direct_full_stand_rate_hz": round(direct_rate, 3),
        "cpus": {"ioc": sorted(ioc_cpus), "clients": sorted(client_cpus)},
        "one_client": one,
        "ratio": round(one["full_stand_rate_hz"] / direct_rate, 3),
        "latency_goal_ms": {
            probe: round(max(1000 / direct[instrument], 1000 * args.poll) + 50, 1)
            for probe, (instrument, _, _) in PROBES.items()
        },
        "link_latency_ms": link,
        "ca_added_ms": {
            probe: {
                key: round(one["latency_ms"][probe][key] - link[probe][key], 1)
                for key in ("p50", "p99")
                if one["latency_ms"][probe][key] is not None and link[probe][key] is not None
            }
            for probe in PROBES
        },
        f"clients_{args.clients}": many,
        "many_over_one_rate": round(many["full_stand_rate_hz"] / one["full_stand_rate_hz"], 3),
        "many_over_one_ioc_poll": round(
            many["ioc_full_stand_poll_rate_hz"] / one["ioc_full_stand_poll_rate_hz"], 3
        ),
        "many_over_one_p99": {
            probe: round(many["latency_ms"][probe]["p99"] / one["latency_ms"][probe]["p99"], 3)
            for probe in PROBES
            if one["latency_ms"][probe]["p99"] and many["latency_ms"][probe]["p99"]
        },
        "iv_ms_per_point": {k: round(1000 * v, 1) for k, v in iv.items()},
        "iv_ratio": round(iv["served"] / iv["direct"], 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
