"""Collector benchmark: PV updates per second recorded without loss, and serving a long history.

Run: `.venv/bin/python benchmarks/collector.py [--seconds 5]`. Loopback CA only, ports of its own.

1. Recording. The source is a C soft IOC (epicscorelibs' `softIoc`, RSRV server) of K `calc`
   records counting up, each scanned every 0.1 s or 0.5 s: K / period updates per second in
   all. Side by side on the same IOC: `teststand collector serve` (its own process, one
   `--pv` per record) and, as the baseline, a bare aioca client process that only counts.
   Each record's values are consecutive counts, so a missing update is a gap: for each PV,
   expected = last - first + 1 over the samples seen, lost = expected - seen. A step is
   lossless when nothing is lost; the steps end at the first where the collector stops answering
   (`saturated`). `lossless_rate` is the highest rate the collector recorded
   without loss (goal >= 20,000/s, `goal_met`); `ratio` = that / the bare client's.
2. Serving. A collector of one PV with a 100,000-sample history (filled in its process) serves
   `P:1:V`; the median time of 5 aioca `caget`s of it, against a static 100,000-element
   waveform served by the same process (`serve_ratio`).
The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from teststand.app.ioc.process import reserve_ca_port

GOAL = 20_000.0
HISTORY = 100_000
#: (records, scan period in s): 2,000 to 40,000 updates/s
STEPS = ((1000, 0.5), (500, 0.1), (1000, 0.1), (2000, 0.1), (4000, 0.1))
SCAN = {0.1: ".1 second", 0.5: ".5 second"}
BARE = r"""
import asyncio, json, sys
from aioca import DBR_DOUBLE, camonitor
pvs = sys.argv[1:]
seen = {pv: [0, None, None] for pv in pvs}  # count, first, last
def on(pv):
    def update(value):
        entry = seen[pv]
        entry[0] += 1
        if entry[1] is None:
            entry[1] = float(value)
        entry[2] = float(value)
    return update
async def main():
    subs = [camonitor(pv, on(pv), datatype=DBR_DOUBLE, all_updates=True) for pv in pvs]
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    print(json.dumps(seen), flush=True)
asyncio.run(main())
"""
HISTORY_SERVER = r"""
import asyncio, sys
import numpy as np
from caproto import ChannelDouble
from caproto.asyncio.server import Context
from teststand.collect.config import make_config
from teststand.collect.server import CollectorServer
length = int(sys.argv[1])
server = CollectorServer(make_config(name="h", prefix="BH:", pvs=["BH:NONE"], length=length,
                                     publish=3600), autostart=False)
ring = server.recorder.rings["BH:NONE"]
for i in range(length):
    ring.append(1.7e9 + i * 0.01, float(i))
server.pvdb["BH:STATIC"] = ChannelDouble(value=np.arange(length, dtype=float), max_length=length)
async def main():
    await server.publish()
    await server.run(["127.0.0.1"], lambda: print("serving", flush=True))
asyncio.run(main())
"""


PORTS = {"ioc": reserve_ca_port(), "collector": reserve_ca_port(), "history": reserve_ca_port()}
REPEATER = reserve_ca_port()
os.environ.update(
    EPICS_CA_AUTO_ADDR_LIST="NO",
    EPICS_CA_ADDR_LIST=" ".join(f"127.0.0.1:{port}" for port in PORTS.values()),
    EPICS_CA_REPEATER_PORT=str(REPEATER),
    EPICS_CAS_BEACON_PORT=str(REPEATER),
    EPICS_CAS_INTF_ADDR_LIST="127.0.0.1",
    EPICS_CAS_AUTO_BEACON_ADDR_LIST="NO",
    EPICS_CAS_BEACON_ADDR_LIST="127.0.0.1",
    EPICS_CA_MAX_ARRAY_BYTES=str(HISTORY * 8 + 1024),
    EPICS_CA_SERVER_PORT=str(PORTS["ioc"]),
)
BIN = Path(sys.executable).parent
#: One event loop for every aioca call of this process (aioca binds its channels to a loop).
LOOP = asyncio.new_event_loop()


def spawn(command: list[str], port: int, first: str, **popen: Any) -> subprocess.Popen[str]:
    env = {**os.environ, "EPICS_CA_SERVER_PORT": str(port)}
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, **popen
    )
    assert process.stdout is not None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line or line.startswith(first):
            break
    if not line.startswith(first):
        raise RuntimeError(f"{command[:4]} did not start")
    return process


def stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()


def lost(histories: dict[str, tuple[int, float | None, float | None]]) -> tuple[int, int]:
    """(expected, lost) updates over PVs: (count, first value, last value) each."""
    expected = missing = 0
    for count, first, last in histories.values():
        if first is None or last is None:
            continue
        span = round(last - first) + 1
        expected += span
        missing += span - count
    return expected, missing


async def collector_histories(prefix: str, count: int) -> dict[str, Any]:
    from aioca import caget

    await caget(f"{prefix}CMD:PUBLISH", timeout=30)
    values = await caget([f"{prefix}{n}:V" for n in range(1, count + 1)], timeout=60)
    out: dict[str, Any] = {}
    for n, array in enumerate(values):
        data = list(array) if len(array) else []
        out[str(n)] = (len(data), data[0] if data else None, data[-1] if data else None)
    return out


def record_step(records: int, period: float, seconds: float, work: Path) -> dict[str, Any]:
    db = work / f"source{records}.db"
    db.write_text(
        "".join(
            f'record(calc, "BS:{n}") {{ field(SCAN, "{SCAN[period]}") field(CALC, "A+1") '
            f'field(INPA, "BS:{n} NPP") }}\n'
            for n in range(records)
        )
    )
    pvs = [f"BS:{n}" for n in range(records)]
    config = work / "collectors.yaml"
    config.write_text(
        json.dumps(
            {
                "collectors": {
                    "bench": {
                        "prefix": "BC:",
                        "pvs": pvs,
                        "length": int(seconds / period * 3) + 50,
                        "publish": 2.0,
                    }
                }
            }
        )
    )
    started: list[subprocess.Popen[str]] = []
    try:
        ioc = [sys.executable, "-m", "epicscorelibs.ioc", "-d", str(db)]
        started.append(spawn(ioc, PORTS["ioc"], "", stderr=subprocess.DEVNULL))
        command = [str(BIN / "teststand"), "collector", "serve", "bench", "--config", str(config)]
        command += ["--interfaces", "127.0.0.1", "--idle"]
        collector = spawn(command, PORTS["collector"], "serving", stderr=subprocess.DEVNULL)
        started.append(collector)
        bare = spawn([sys.executable, "-c", BARE, *pvs], PORTS["ioc"], "ready")
        started.append(bare)
        time.sleep(3.0 + records / 500)  # every monitor connected
        from caproto.sync.client import write

        try:
            write("BC:CMD:START", [1], notify=True, timeout=60, repeater=False)
            time.sleep(seconds)
            write("BC:CMD:STOP", [1], notify=True, timeout=60, repeater=False)
        except (OSError, TimeoutError) as exc:  # caproto's timeouts are TimeoutErrors
            return {
                "records": records,
                "period": period,
                "nominal_rate": round(records / period),
                "saturated": f"the collector stopped answering: {type(exc).__name__}",
            }
        assert bare.stdin is not None and bare.stdout is not None
        bare.stdin.write("\n")
        bare.stdin.flush()
        bare_seen = json.loads(bare.stdout.readline())
        recorded = LOOP.run_until_complete(collector_histories("BC:", records))
    finally:
        for process in reversed(started):
            stop(process)
    expected, missing = lost(recorded)
    bare_expected, bare_missing = lost({k: tuple(v) for k, v in bare_seen.items()})
    return {
        "records": records,
        "period": period,
        "nominal_rate": round(records / period),
        "collector_rate": round(expected / seconds),
        "collector_lost": missing,
        "bare_rate": round(bare_expected / seconds),
        "bare_lost": bare_missing,
    }


async def time_caget(pv: str) -> float:
    from aioca import caget

    await caget(pv, timeout=60)  # connect
    times = []
    for _ in range(5):
        start = time.perf_counter()
        data = await caget(pv, timeout=60)
        times.append(time.perf_counter() - start)
        assert len(data) == HISTORY
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="s recorded per step")
    args = parser.parse_args()
    repeater = subprocess.Popen([str(BIN / "caproto-repeater"), "-q"])
    try:
        steps = []
        with tempfile.TemporaryDirectory() as work:
            for records, period in STEPS:
                steps.append(record_step(records, period, args.seconds, Path(work)))
                print(json.dumps(steps[-1]), flush=True)
                if "saturated" in steps[-1]:
                    break
        history = spawn(
            [sys.executable, "-c", HISTORY_SERVER, str(HISTORY)], PORTS["history"], "serving"
        )
        try:
            serve_history = LOOP.run_until_complete(time_caget("BH:1:V"))
            serve_static = LOOP.run_until_complete(time_caget("BH:STATIC"))
        finally:
            stop(history)
    finally:
        repeater.terminate()
        repeater.wait(10)

    def best(who: str) -> int:  # the highest nominal rate seen without a gap
        return max((s["nominal_rate"] for s in steps if s.get(f"{who}_lost") == 0), default=0)

    lossless, bare_lossless = best("collector"), best("bare")
    print(
        json.dumps(
            {
                "seconds_per_step": args.seconds,
                "steps": steps,
                "lossless_rate": lossless,
                "bare_lossless_rate": bare_lossless,
                "ratio": round(lossless / bare_lossless, 3) if bare_lossless else None,
                "goal": GOAL,
                "goal_met": lossless >= GOAL,
                "serve_100k_ms": round(serve_history * 1000, 1),
                "serve_static_100k_ms": round(serve_static * 1000, 1),
                "serve_ratio": round(serve_history / serve_static, 2),
                "load_average": os.getloadavg()[0],
            }
        )
    )


if __name__ == "__main__":
    main()
