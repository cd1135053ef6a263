"""Safety benchmark: how fast the IOC's watchdog makes the stand safe after a fault.

Run: `.venv/bin/python benchmarks/safety.py [--trials 20] [--volts 200]`. The profile's
simulated stand runs here (speed 10: the supply ramps down at 50 V/s of simulated time, 500 V/s
real) and `teststand ioc` serves it in its own process, watchdog inside, on loopback Channel
Access. Each trial puts the stand in RUN (a controlling client with a heartbeat), brings every
HV channel to `--volts`, then makes one fault:

- `killed`: the controlling client is a process of its own, killed with SIGKILL;
- `humidity`: the box's dew point steps up (lab air leaking in), the fault being the moment the
  coldest plate is less than `interlocks.dew_point_margin` above it (the simulator's own state);
- `lid`: the coldbox lid is opened.

Timed from the fault, in the simulators' own state sampled every 5 ms: `first_write` until the
first channel's VSET is 0, `all_safe` until every channel reads below 2 V. The baseline, measured
in the same run: `floor`, from a VSET 0 written directly to the supply to every channel below
2 V (the ramp-down time itself). Goals: first write ≤ 1 s; all safe ≤ floor + 2 s (`ratio_*`
below 1 meets them). The stand is reset between trials. The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import yaml

from teststand.app.ioc.process import IocProcess, LoopbackCA

SPEED = 10.0
PREFIX = "BSF:"
MARGIN = 3.0  # interlocks.dew_point_margin of the profile's stand file
CLIENT = """
import sys, time
from caproto.threading.client import Context
prefix = sys.argv[1]
names = ["CONTROL:TAKEOVER", "STATE:CMD", "CLIENT:HEARTBEAT", "CLIENT:RE_STATE"]
pvs = dict(zip(names, Context().get_pvs(*[prefix + n for n in names])))
for pv in pvs.values():
    pv.wait_for_connection(timeout=10)
def put(name, text):
    pvs[name].write(text.encode() + b"\\0", wait=True, timeout=10)
put("CONTROL:TAKEOVER", "benchmark client")
put("CLIENT:RE_STATE", "running")
put("STATE:CMD", "READY benchmark")
put("STATE:CMD", "RUN benchmark")
print("run", flush=True)
while True:
    pvs["CLIENT:HEARTBEAT"].write([1], wait=False)
    time.sleep(0.2)
"""


def stand_data() -> dict[str, Any]:
    root = Path(__file__).resolve().parents[1]
    data: dict[str, Any] = yaml.safe_load((root / "profile_collection" / "stand.yaml").read_text())
    data["speed"] = SPEED
    hv = data["instruments"]["hv"]["simulator"]["options"]
    hv["breakdown"], hv["leakage"] = [1000.0] * 8, [1.0e-6] * 8
    data["instruments"]["coldbox"]["simulator"] = {"options": {"leak_time_constant": 5.0}}
    data["limits"]["max_bias"] = {"planar": 600, "3d": 600}
    data["interlocks"]["chiller_timeout"] = 3600
    return data


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(0.005)


class Bench:
    def __init__(self, volts: float, ca: LoopbackCA) -> None:
        from teststand.config import load_stand
        from teststand.stand.simulation import start_simulated_stand

        self.volts = volts
        self.ca = ca
        self.tmp = Path(tempfile.mkdtemp(prefix="teststand-bench-safety-"))
        data = stand_data()
        self.sims, urls = start_simulated_stand(load_stand(data), transport="tcp")
        data["sim"] = False
        for name, url in urls.items():
            data["instruments"][name]["url"] = url
        self.file = self.tmp / "ioc.yaml"
        self.file.write_text(yaml.safe_dump(data))
        self.stack = ExitStack()  # the repeater while the benchmark runs
        self.stack.enter_context(self.ca.repeater())
        log = self.tmp / "ioc.log"
        self.ioc = IocProcess(self.file, PREFIX, ca=self.ca, log=log).start()
        from caproto.threading.client import Context

        self.context = Context()
        names = ["CONTROL:TAKEOVER", "CONTROL:RELEASE", "STATE:CMD", "STATE"]
        names += ["CLIENT:HEARTBEAT", "CLIENT:RE_STATE"]
        pvs = self.context.get_pvs(*[PREFIX + n for n in names])
        self.pvs = dict(zip(names, pvs, strict=True))
        for pv in pvs:
            pv.wait_for_connection(timeout=10)
        self.beating = threading.Event()
        threading.Thread(target=self._beat, daemon=True).start()

    # ---- the simulators ----
    def hv(self) -> list[dict[str, Any]]:
        channels: list[dict[str, Any]] = self.sims["hv"].instrument.snapshot()["channels"]
        return channels

    def caen(self, command: str) -> None:
        reply = self.sims["hv"].instrument.handle(command)
        assert reply is not None and "ERR" not in reply, reply

    def margin(self) -> float:
        box = self.sims["coldbox"].instrument
        with box.lock:
            box.tick()
            state = box.snapshot()
        return float(min(state["plates"]) - state["dew_point"])

    # ---- the IOC ----
    def put(self, name: str, text: str) -> None:
        self.pvs[name].write(text.encode() + b"\0", wait=True, timeout=10)

    def state(self) -> str:
        from caproto import ChannelType

        return str(self.pvs["STATE"].read(data_type=ChannelType.STRING).data[0].decode())

    def _beat(self) -> None:
        while True:
            if self.beating.is_set():
                self.pvs["CLIENT:HEARTBEAT"].write([1], wait=False)
            time.sleep(0.2)

    def run_here(self) -> None:
        self.put("CONTROL:TAKEOVER", "benchmark")
        self.put("CLIENT:RE_STATE", "running")
        self.beating.set()
        self.put("STATE:CMD", "READY benchmark")
        self.put("STATE:CMD", "RUN benchmark")

    def reset(self) -> None:
        self.beating.clear()
        self.put("CONTROL:TAKEOVER", "benchmark reset")
        deadline = time.monotonic() + 60
        while self.state() in ("SAFE", "ERROR"):
            try:
                self.put("STATE:CMD", "RESET benchmark")
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self.put("CONTROL:RELEASE", "benchmark")

    def hv_up(self) -> None:
        for ch in range(8):
            self.caen(f"$CMD:SET,CH:{ch},PAR:RUP,VAL:50")
            self.caen(f"$CMD:SET,CH:{ch},PAR:RDW,VAL:50")
            self.caen(f"$CMD:SET,CH:{ch},PAR:ON")
        self.caen(f"$CMD:SET,CH:8,PAR:VSET,VAL:{self.volts:g}")
        wait_until(lambda: min(abs(c["vmon"]) for c in self.hv()) > self.volts - 5, 30, "HV up")

    # ---- one trial ----
    def watch(self, since: float, timeout: float = 30.0) -> tuple[float, float]:
        """(first VSET 0, every VMON < 2 V) in s after `since`, sampled every 5 ms."""
        first = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            channels = self.hv()
            now = time.monotonic()
            if first is None and any(c["vset"] == 0 for c in channels):
                first = now - since
            if first is not None and max(abs(c["vmon"]) for c in channels) < 2.0:
                return first, now - since
            time.sleep(0.005)
        raise TimeoutError("the stand was not made safe")

    def floor(self) -> float:
        self.run_here()
        self.hv_up()
        start = time.monotonic()
        self.caen("$CMD:SET,CH:8,PAR:VSET,VAL:0")
        floor = self.watch(start)[1]
        self.put("STATE:CMD", "READY benchmark")
        self.put("STATE:CMD", "INIT benchmark")
        self.beating.clear()
        self.put("CONTROL:RELEASE", "benchmark")
        return floor

    def trial(self, fault: str) -> tuple[float, float]:
        box = self.sims["coldbox"].instrument
        client = None
        if fault == "killed":
            client = subprocess.Popen(
                [sys.executable, "-c", CLIENT, PREFIX], stdout=subprocess.PIPE, text=True
            )
            assert client.stdout is not None and client.stdout.readline().startswith("run")
        else:
            self.run_here()
        try:
            self.hv_up()
            if fault == "killed":
                assert client is not None
                start = time.monotonic()
                client.send_signal(signal.SIGKILL)
            elif fault == "lid":
                start = time.monotonic()
                box.open_lid()
            else:
                box.handle("set valve0 off")  # the safe action opened it: no more flush
                box.set_ambient_dew_point(19.5)  # plates at 20 °C: the margin falls to 0.5 K
                wait_until(lambda: self.margin() < MARGIN, 30, "the margin under its limit")
                start = time.monotonic()
            result = self.watch(start)
            wait_until(lambda: self.state() == "SAFE", 30, "SAFE")
            return result
        finally:
            if client is not None:
                client.kill()
                client.wait(10)
            box.close_lid()
            box.set_ambient_dew_point(9.0)
            wait_until(lambda: self.margin() > MARGIN + 1, 60, "the margin back")
            self.reset()

    def close(self) -> None:
        self.context.disconnect()
        self.ioc.close()
        self.sims.stop()
        self.stack.close()


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"p50": round(statistics.median(ordered), 3), "p99": round(p99, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help="trials per fault (default 20)")
    parser.add_argument("--volts", type=float, default=200.0, help="HV before the fault")
    args = parser.parse_args()
    ca = LoopbackCA.allocate()
    os.environ.update(ca.environment())  # before caproto's client reads it
    bench = Bench(args.volts, ca)
    results: dict[str, Any] = {"volts": args.volts, "trials": args.trials, "speed": SPEED}
    try:
        floors = [bench.floor() for _ in range(5)]
        floor = statistics.median(floors)
        results["floor_s"] = round(floor, 3)
        for fault in ("killed", "humidity", "lid"):
            firsts, safes = [], []
            for index in range(args.trials):
                first, safe = bench.trial(fault)
                firsts.append(first)
                safes.append(safe)
                print(f"{fault} {index + 1}: first write {first:.3f} s, safe {safe:.3f} s")
            first_stats, safe_stats = summary(firsts), summary(safes)
            results[fault] = {
                "first_write_s": first_stats,
                "all_safe_s": safe_stats,
                "ratio_first_write_p99": round(first_stats["p99"] / 1.0, 3),
                "ratio_all_safe_p99": round(safe_stats["p99"] / (floor + 2.0), 3),
            }
    finally:
        bench.close()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
