"""Collector benchmark: PV updates per second recorded without loss, and serving a long history.

Run: `.venv/bin/python benchmarks/collector.py [--seconds 3] [--pvs 10]`. Loopback CA only, on
ports of its own. A source process (caproto) posts updates to `--pvs` PVs at a stepped target
rate (round robin, values counting up). At each rate, side by side:

- baseline: one bare aioca client process counting every monitor update it receives;
- collector: `teststand collector serve` (its own process) recording the same PVs; after the
  step, CMD:PUBLISH and NSAMPLES give the samples it recorded.

`lossless_rate` is the highest achieved source rate at which the collector recorded every update
(goal >= 20,000/s, `goal_met`); `ratio` = collector's lossless rate / the bare client's. Then
the time to serve a 100,000-sample history (`P:1:V`, filled by the run) to a client, median of 5
`caget`s, against the same-size static waveform served by the source (`serve_ratio`).
The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

GOAL = 20_000.0
HISTORY = 100_000
RATES = (5_000, 10_000, 20_000, 30_000, 40_000, 60_000)
SOURCE = r"""
import asyncio, sys, time
import numpy as np
from caproto import ChannelDouble
from caproto.asyncio.server import Context
count, length = int(sys.argv[1]), int(sys.argv[2])
pvs = [ChannelDouble(value=0.0) for _ in range(count)]
pvdb = {f"SRC:{n}": pv for n, pv in enumerate(pvs)}
pvdb["SRC:WAVE"] = ChannelDouble(value=np.arange(length, dtype=float), max_length=length)
async def steps():
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    value = 0.0
    while line := (await reader.readline()).decode().split():
        rate, seconds = float(line[0]), float(line[1])
        sent, batch, start = 0, max(1, int(rate / 200)), time.monotonic()
        while time.monotonic() - start < seconds:
            for _ in range(batch):
                value += 1.0
                await pvs[sent % count].write(value)
                sent += 1
            ahead = start + sent / rate - time.monotonic()
            await asyncio.sleep(max(0.0, ahead))
        print(sent, time.monotonic() - start, flush=True)
async def main():
    print("serving", flush=True)
    await asyncio.gather(Context(pvdb, ["127.0.0.1"]).run(), steps())
asyncio.run(main())
"""
BARE = r"""
import asyncio, sys
from aioca import DBR_DOUBLE, FORMAT_TIME, camonitor
count = int(sys.argv[1])
received = 0
def update(value):
    global received
    received += 1
async def main():
    subs = [camonitor(f"SRC:{n}", update, datatype=DBR_DOUBLE, format=FORMAT_TIME,
                      all_updates=True) for n in range(count)]
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print("ready", flush=True)
    global received
    while line := (await reader.readline()).decode().strip():
        if line == "reset":
            received = 0
        print(received, flush=True)
asyncio.run(main())
"""


def free_port() -> int:
    while True:
        with socket.socket() as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port


def isolated_environment() -> dict[str, int]:
    """Loopback CA on ports of this run; every server on its own port, searched explicitly."""
    ports = {"source": free_port(), "collector": free_port(), "repeater": free_port()}
    os.environ.update(
        EPICS_CA_AUTO_ADDR_LIST="NO",
        EPICS_CA_ADDR_LIST=f"127.0.0.1:{ports['source']} 127.0.0.1:{ports['collector']}",
        EPICS_CA_REPEATER_PORT=str(ports["repeater"]),
        EPICS_CAS_BEACON_PORT=str(ports["repeater"]),
        EPICS_CAS_INTF_ADDR_LIST="127.0.0.1",
        EPICS_CAS_AUTO_BEACON_ADDR_LIST="NO",
        EPICS_CAS_BEACON_ADDR_LIST="127.0.0.1",
        EPICS_CA_MAX_ARRAY_BYTES=str(HISTORY * 8 + 1024),
        EPICS_CA_SERVER_PORT=str(ports["source"]),
    )
    return ports


def spawn(command: list[str], port: int, first: str) -> subprocess.Popen[str]:
    env = {**os.environ, "EPICS_CA_SERVER_PORT": str(port)}
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith(first):
        raise RuntimeError(f"{command[:4]} did not start: {line!r}")
    return process


def ask(process: subprocess.Popen[str], line: str) -> str:
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(line + "\n")
    process.stdin.flush()
    return process.stdout.readline().strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="s per rate step")
    parser.add_argument("--pvs", type=int, default=10)
    args = parser.parse_args()
    ports = isolated_environment()
    from caproto.sync.client import read, write

    bin_dir = Path(sys.executable).parent
    repeater = subprocess.Popen([str(bin_dir / "caproto-repeater"), "-q"])
    started: list[subprocess.Popen[str]] = [repeater]  # type: ignore[list-item]
    prefix = "BCOL:"
    try:
        source = spawn(
            [sys.executable, "-c", SOURCE, str(args.pvs), str(HISTORY)], ports["source"], "serving"
        )
        started.append(source)
        command = [str(bin_dir / "teststand"), "collector", "serve", "bench", "--prefix", prefix]
        command += [arg for n in range(args.pvs) for arg in ("--pv", f"SRC:{n}")]
        command += ["--length", str(HISTORY), "--publish", "1", "--interfaces", "127.0.0.1"]
        collector = spawn(command, ports["collector"], "serving")
        started.append(collector)
        bare = spawn([sys.executable, "-c", BARE, str(args.pvs)], ports["source"], "ready")
        started.append(bare)
        time.sleep(2.0)  # subscriptions made

        def put(pv: str) -> None:
            write(prefix + pv, [1], notify=True, timeout=60, repeater=False)

        steps: list[dict[str, Any]] = []
        for rate in RATES:
            put("CMD:CLEAR")
            ask(bare, "reset")
            sent_text = ask(source, f"{rate} {args.seconds}").split()
            sent, elapsed = int(sent_text[0]), float(sent_text[1])
            time.sleep(1.0)  # the last updates in flight
            put("CMD:PUBLISH")
            recorded = int(read(prefix + "NSAMPLES", timeout=10, repeater=False).data[0])
            received = int(ask(bare, "count"))
            steps.append(
                {
                    "target": rate,
                    "achieved": round(sent / elapsed),
                    "sent": sent,
                    "collector": recorded,
                    "bare_client": received,
                }
            )
            print(json.dumps(steps[-1]), flush=True)

        def best(who: str) -> int:
            return max((s["achieved"] for s in steps if s[who] == s["sent"]), default=0)

        lossless, bare_lossless = best("collector"), best("bare_client")

        # a full 100,000-sample history of SRC:0
        put("CMD:CLEAR")
        ask(source, f"{50_000} {HISTORY * args.pvs / 50_000 + 0.5}")
        time.sleep(1.0)
        put("CMD:PUBLISH")
        samples = int(read(prefix + "1:NSAMPLES", timeout=10, repeater=False).data[0])

        def timed(pv: str) -> float:
            times = []
            for _ in range(5):
                start = time.perf_counter()
                data = read(pv, timeout=30, repeater=False).data
                times.append(time.perf_counter() - start)
                assert len(data) >= min(samples, HISTORY) - 1
            return statistics.median(times)

        serve_history = timed(prefix + "1:V")
        serve_static = timed("SRC:WAVE")
        result = {
            "pvs": args.pvs,
            "seconds_per_step": args.seconds,
            "steps": steps,
            "lossless_rate": lossless,
            "bare_client_lossless_rate": bare_lossless,
            "ratio": round(lossless / bare_lossless, 3) if bare_lossless else None,
            "goal": GOAL,
            "goal_met": lossless >= GOAL,
            "history_samples": samples,
            "serve_100k_ms": round(serve_history * 1000, 1),
            "serve_static_100k_ms": round(serve_static * 1000, 1),
            "serve_ratio": round(serve_history / serve_static, 2),
        }
    finally:
        for process in reversed(started):
            process.terminate()
            process.wait(20)
    print(json.dumps(result))


if __name__ == "__main__":
    with tempfile.TemporaryDirectory():
        main()
