"""Monitor benchmark: a 100-slot synthetic stand at 10 Hz into a real InfluxDB (Debian's influxd).

Run: `.venv/bin/python benchmarks/monitor.py [--slots 100] [--rate 10] [--duration 20]`.
A caproto IOC (this file with `--serve`) serves `BEN:SLOTn:BIAS` (V) and `BEN:SLOTn:LEAKAGE_CURRENT`
(A) for every slot, each changing `--rate` times a second; `teststand.app.monitor.run.Monitor`
(this file with `--monitor`, its own process) subscribes to all of them and writes to influxd.
Both on loopback with isolated Channel Access ports.

- `points_per_s`: points that arrived in the database per second, counted there;
  `offered_per_s` the PV changes the IOC made (`nominal_per_s` if it kept up with `--rate`);
  `baseline_points_per_s`: the same database taking batches of 5,000 points posted directly
  with httpx (its capacity, same run); `ratio` = points_per_s / offered_per_s (goal 1.0:
  nothing falls behind).
- `latency_p50_s`/`latency_p99_s`: every 0.25 s, the age of slot 1's newest queryable point
  (PV change → queryable, plus up to one update period); goal p99 <= 2 s.
- `cpu_per_1000_points_s`: the monitor process' CPU seconds per second per 1,000 points/s.
- `--outage 60`: influxd stopped for 60 s after the measurement, then started again;
  `outage_backlog_points` journaled meanwhile, `journal_drained_s` from influxd's restart to
  an empty journal. Always: the monitor is stopped (SIGINT: it flushes) and `points_made` (its
  own count, in its status file) must equal `points_stored` (counted in the database over the
  whole run): every point stored, once (a point is a series, a field and a time, so a batch
  sent twice would not add rows: stored == made means each once). `outage_changes` are the
  IOC's PV changes during the outage, for scale.
The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "BEN:"


def serve(slots: int, rate: float) -> None:
    """The synthetic IOC: every PV changes `rate` times a second."""
    from caproto import ChannelDouble
    from caproto.asyncio.server import Context

    pvdb = {}
    for slot in range(1, slots + 1):
        pvdb[f"{PREFIX}SLOT{slot}:BIAS"] = ChannelDouble(value=0.0, units="V")
        pvdb[f"{PREFIX}SLOT{slot}:LEAKAGE_CURRENT"] = ChannelDouble(value=0.0, units="A")

    counter = Path(os.environ["BENCH_WRITES"])

    async def run() -> None:
        context = Context(pvdb, ["127.0.0.1"])
        task = asyncio.create_task(context.run())
        print("serving", flush=True)
        writes = 0
        while True:
            started = time.monotonic()
            for name, channel in pvdb.items():
                value = random.uniform(0, 100) if name.endswith("BIAS") else random.uniform(0, 1e-6)
                await channel.write(value)
            writes += len(pvdb)
            await asyncio.to_thread(counter.write_text, str(writes))
            await asyncio.sleep(max(0.0, 1 / rate - (time.monotonic() - started)))
        await task

    asyncio.run(run())


def monitor(slots: int, url: str, db: str, journal: str) -> None:
    from influx import PASSWORD, USER

    from teststand.app.monitor.pvs import WatchedPV
    from teststand.app.monitor.run import Monitor
    from teststand.config import load_stand
    from teststand.storage.monitoring import PVPolicy

    base = load_stand(ROOT / "profile_collection" / "stand.yaml").model_dump()
    base["monitoring"] = {
        "database": {"url": url, "db": db, "user": USER, "password": PASSWORD},
        "journal_dir": journal,
    }
    config = load_stand(base)
    pvs = [
        WatchedPV(
            suffix=f"SLOT{slot}:{name.upper()}",
            measurement="slot",
            tags={"stand": "bench", "device": "slot", "slot": str(slot)},
            attribute=name,
            text=False,
            policy=PVPolicy(),
        )
        for slot in range(1, slots + 1)
        for name in ("bias", "leakage_current")
    ]
    with contextlib.suppress(KeyboardInterrupt):  # SIGINT: flush, write the status, exit
        asyncio.run(Monitor(config, PREFIX, pvs=pvs).run())


def baseline(influxd: Any, db: str, points: int) -> float:
    import httpx

    from teststand.app.monitor.lineprotocol import line

    start = time.time_ns()
    lines = [
        line("base", {"slot": str(i % 100)}, {"bias_V": float(i)}, start + i) for i in range(points)
    ]
    params = {"db": db, "u": "admin", "p": "secret", "precision": "ns"}
    began = time.perf_counter()
    for i in range(0, points, 5000):
        body = "\n".join(lines[i : i + 5000]).encode()
        httpx.post(
            influxd.url + "/write", params=params, content=body, timeout=60
        ).raise_for_status()
    return points / (time.perf_counter() - began)


def count(influxd: Any, db: str, since_ns: int) -> int:
    series = influxd.query(f"SELECT count(bias_V) FROM slot WHERE time >= {since_ns}", db)
    leak = influxd.query(f"SELECT count(leakage_current_A) FROM slot WHERE time >= {since_ns}", db)
    total = 0
    for result in (series, leak):
        if result:
            total += int(result[0]["values"][0][1])
    return total


def _writes(path: Path) -> int:
    """The IOC's count of PV changes (read again when caught mid-write)."""
    while not (text := path.read_text().strip()):
        time.sleep(0.01)
    return int(text)


def outage(
    influxd: Any, db: str, writes_file: Path, journal: Path, seconds: float
) -> dict[str, Any]:
    """influxd stopped for `seconds`, then started: the journal's backlog and its drain time."""
    from teststand.app.monitor.journal import Journal

    writes0 = _writes(writes_file)
    influxd.stop()
    time.sleep(seconds)
    backlog = Journal(journal, 10**12).backlog().points
    writes1 = _writes(writes_file)
    influxd.start()
    began = time.monotonic()
    while any(journal.glob("*.lp")) and time.monotonic() - began < 600:
        time.sleep(0.1)
    return {
        "outage_s": seconds,
        "outage_changes": writes1 - writes0,
        "outage_backlog_points": backlog,
        "journal_drained_s": round(time.monotonic() - began, 1),
        "journal_left": len(list(journal.glob("*.lp"))),
    }


def stop_monitor(monitor: subprocess.Popen[bytes]) -> None:
    """SIGINT (the monitor flushes and writes its status file), killed after 30 s."""
    monitor.send_signal(signal.SIGINT)
    try:
        monitor.wait(30)
    except subprocess.TimeoutExpired:
        monitor.kill()
        monitor.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slots", type=int, default=100)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--outage", type=float, default=0.0, help="s influxd is down (soak)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--monitor", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "tests"))
    if args.serve:
        return serve(args.slots, args.rate)
    if args.monitor:
        return monitor(args.slots, *args.monitor)

    import tempfile

    import psutil
    from influx import Influxd
    from stand_soak.checks import points_stored

    from teststand.app.ioc.process import LoopbackCA

    writes_file = Path(tempfile.mkdtemp(prefix="teststand-bench-")) / "writes"
    ca = LoopbackCA.allocate()
    env = {**os.environ, **ca.environment(), "BENCH_WRITES": str(writes_file)}
    journal = Path(tempfile.mkdtemp(prefix="teststand-bench-journal-"))
    me = [sys.executable, __file__, "--slots", str(args.slots), "--rate", str(args.rate)]
    influxd = Influxd()
    ioc = mon = None
    try:
        db = influxd.create("bench")
        ioc = subprocess.Popen([*me, "--serve"], env=env, stdout=subprocess.PIPE, text=True)
        assert ioc.stdout is not None and ioc.stdout.readline().startswith("serving")
        mon = subprocess.Popen([*me, "--monitor", influxd.url, db, str(journal)], env=env)
        deadline = time.monotonic() + 60
        while count(influxd, db, 0) == 0 and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(2.0)  # past the start-up burst
        process = psutil.Process(mon.pid)
        cpu0, start_ns, t0 = sum(process.cpu_times()[:2]), time.time_ns(), time.monotonic()
        writes0 = _writes(writes_file)
        ages: list[float] = []
        while time.monotonic() - t0 < args.duration:
            rows = influxd.query("SELECT last(bias_V) FROM slot WHERE slot='1'", db)
            ages.append((time.time_ns() - rows[0]["values"][0][0]) / 1e9)
            time.sleep(0.25)
        elapsed = time.monotonic() - t0
        cpu = sum(process.cpu_times()[:2]) - cpu0
        offered = (_writes(writes_file) - writes0) / elapsed
        time.sleep(3.0)  # let the last batches land
        arrived = count(influxd, db, start_ns) - count(influxd, db, start_ns + int(elapsed * 1e9))
        down = outage(influxd, db, writes_file, journal, args.outage) if args.outage else {}
        stop_monitor(mon)
        made = json.loads((journal / "status.json").read_text())["points_made"]
        once = points_stored(influxd, db, made)
        base = baseline(influxd, db, 50_000)
    finally:
        for child in (mon, ioc):
            if child is not None and child.poll() is None:
                child.kill()
                child.wait(30)
        influxd.close()
    rate = arrived / elapsed
    ages.sort()
    result = {
        "slots": args.slots,
        "rate_hz": args.rate,
        "nominal_per_s": 2 * args.slots * args.rate,
        "offered_per_s": round(offered, 1),
        "points_per_s": round(rate, 1),
        "ratio": round(rate / offered, 3),
        "baseline_points_per_s": round(base, 1),
        "latency_p50_s": round(statistics.median(ages), 3),
        "latency_p99_s": round(ages[min(len(ages) - 1, int(0.99 * len(ages)))], 3),
        "cpu_per_1000_points_s": round((cpu / elapsed) / (rate / 1000), 3) if rate else None,
        "monitor_cpu_fraction": round(cpu / elapsed, 3),
        **down,
        **once,
        "every_point_once": once["points_made"] == once["points_stored"],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
