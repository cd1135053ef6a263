"""Plan benchmark: the stand's IV step loop against bluesky's `bp.scan`, with the same devices.

Run: `.venv/bin/python benchmarks/plans.py [--reps 5] [--profile 15]`. The stand of
profile_collection/stand.yaml is built with mock devices (`build(..., mock=True)`: no instrument
latency, the HV channels ramp at once), so what is measured is the per-point cost of the plan and
RunEngine machinery. In one process and one RunEngine (no subscriber unless `--subscriber`, then
the same no-op one for both), alternating, each repetition runs over all 8 module slots:

- `iv_scan(stand, slots, 0, 100, 0.5, settle=0)`: 201 points, each one `wait_for` ramping every
  slot, one `read` of the IV readout, the compliance checks;
- `bp.scan(slots, slot1, 0, 100, ..., slot8, 0, 100, num=201)`: the 8 slots moved together and
  read at each of the same 201 points.

Per-point time is the RunEngine call's wall time divided by the points, subtracting nothing (the
per-run work, such as iv_scan's baseline readings and final ramp to 0 V, is included). The figure
of merit is `ratio` = iv_scan / bp.scan of the medians (goal <= 0.5). For orientation, the same
repetitions also time the device work both plans share, awaited on the RunEngine's loop without
any plan: `step_slots_ms_per_point` (iv_scan's ramp of the 8 slots; bp.scan's sets cost about the
same), `iv_readout_read_ms_per_point` and `slot_reads_ms_per_point` (the 8 slots read, as
bp.scan does). With `--profile N`, one more iv_scan run under cProfile (in the RunEngine's loop
thread) prints its top N functions by own time and by cumulative time.
Unretrieved task exceptions (the mock CAEN client refuses `on()`, which `wait_for` does not
surface) are counted, not printed. The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import pstats
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import bluesky
import bluesky.plans as bp
from bluesky import RunEngine
from bluesky.run_engine import RunEngineResult, call_in_bluesky_event_loop
from bluesky.utils import MsgGenerator

import teststand
from teststand.plans.iv import IVReadout, check_range, iv_scan, iv_voltages, step_slots
from teststand.stand import ModuleSlot, TestStand, build

STAND_FILE = Path(__file__).resolve().parents[1] / "profile_collection" / "stand.yaml"
START, STOP, STEP = 0.0, 100.0, 0.5  # within slot 4's 120 V limit (3D sensor)
PACKAGES = r"teststand|ophyd_async|bluesky|event_model|stamina|tenacity"


def count_unretrieved(counter: dict[str, int]) -> None:
    """Count (instead of printing) the event loop's "exception was never retrieved" reports."""

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        name = type(context.get("exception")).__name__
        counter[name] = counter.get(name, 0) + 1

    loop = call_in_bluesky_event_loop(_running_loop())
    loop.set_exception_handler(handler)


async def _running_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


async def _call(function: Callable[[], None]) -> None:
    function()


def stand_iv(stand: TestStand, slots: list[int]) -> MsgGenerator[Any]:
    return iv_scan(stand, slots, START, STOP, STEP, settle=0)


def bluesky_scan(stand: TestStand, slots: list[int]) -> MsgGenerator[Any]:
    devices: list[ModuleSlot] = [stand.slots[n] for n in slots]
    motors: list[Any] = []
    for slot in devices:
        motors += [slot, START, STOP]
    points = len(iv_voltages(START, STOP, STEP))
    return (yield from bp.scan(devices, *motors, num=points))


def timed(RE: RunEngine, plan: Callable[[], MsgGenerator[Any]]) -> float:
    started = time.perf_counter()
    result = RE(plan())
    elapsed = time.perf_counter() - started
    if not isinstance(result, RunEngineResult) or result.exit_status != "success":
        raise RuntimeError(f"run did not succeed: {result}")
    return elapsed


def component(make: Callable[[float], Awaitable[Any]], voltages: list[float]) -> float:
    """Seconds to await `make(v)` for every voltage, on the RunEngine's loop, without a plan."""

    async def every_point() -> float:
        started = time.perf_counter()
        for voltage in voltages:
            await make(voltage)
        return time.perf_counter() - started

    seconds: float = call_in_bluesky_event_loop(every_point())
    return seconds


def profile(RE: RunEngine, plan: Callable[[], MsgGenerator[Any]], top: int) -> str:
    """Profile one run in the thread that runs it: the RunEngine's event loop thread."""
    profiler = cProfile.Profile()
    call_in_bluesky_event_loop(_call(profiler.enable))
    RE(plan())
    call_in_bluesky_event_loop(_call(profiler.disable))
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(PACKAGES, top)
    text = out.getvalue()
    places = (bluesky.__file__, teststand.__file__, asyncio.__file__)
    for prefix in (str(Path(place).parents[1]) for place in places):
        text = text.replace(prefix + "/", "")
    return text


def measure(reps: int, top: int, subscriber: bool) -> dict[str, Any]:
    RE = RunEngine(call_returns_result=True)
    if subscriber:
        RE.subscribe(lambda name, doc: None)  # type: ignore[no-untyped-call]
    unretrieved: dict[str, int] = {}
    count_unretrieved(unretrieved)
    stand = build(STAND_FILE, mock=True)
    slots = [n for n, slot in stand.config.slots.items() if slot.module is not None]
    chosen: list[ModuleSlot] = [stand.slots[n] for n in slots]
    voltages = iv_voltages(START, STOP, STEP)
    points = len(voltages)
    plans = {"iv": lambda: stand_iv(stand, slots), "bp": lambda: bluesky_scan(stand, slots)}
    readout = IVReadout(chosen)
    timeouts: dict[int, float] = {}
    call_in_bluesky_event_loop(check_range(chosen, voltages, timeouts))
    parts: dict[str, Callable[[float], Awaitable[Any]]] = {
        "step": lambda v: step_slots(chosen, v, timeouts, {}),
        "iv_read": lambda v: readout.read(),
        "slot_reads": lambda v: asyncio.gather(*(slot.read() for slot in chosen)),
    }
    for plan in plans.values():  # warm up: first reads, imports, caches
        timed(RE, plan)
    seconds: dict[str, list[float]] = {name: [] for name in [*plans, *parts]}
    for _ in range(reps):  # alternate, so that machine noise hits both alike
        for name, plan in plans.items():
            seconds[name].append(timed(RE, plan))
        for name, part in parts.items():
            seconds[name].append(component(part, voltages))
    report = profile(RE, plans["iv"], top) if top else ""
    call_in_bluesky_event_loop(stand.close())
    ms = {name: statistics.median(s) / points * 1e3 for name, s in seconds.items()}
    return {
        "iv_scan_ms_per_point": round(ms["iv"], 3),
        "bp_scan_ms_per_point": round(ms["bp"], 3),
        "ratio": round(ms["iv"] / ms["bp"], 3),
        "points": points,
        "slots": len(slots),
        "repetitions": reps,
        "subscriber": "no-op" if subscriber else "none",
        "iv_scan_runs_ms_per_point": [round(s / points * 1e3, 3) for s in seconds["iv"]],
        "bp_scan_runs_ms_per_point": [round(s / points * 1e3, 3) for s in seconds["bp"]],
        "step_slots_ms_per_point": round(ms["step"], 3),
        "iv_readout_read_ms_per_point": round(ms["iv_read"], 3),
        "slot_reads_ms_per_point": round(ms["slot_reads"], 3),
        "unretrieved_task_exceptions": unretrieved,
        "profile": report,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="runs of each plan, alternating")
    parser.add_argument("--profile", type=int, default=15, help="top N entries (0: no profile)")
    parser.add_argument("--subscriber", action="store_true", help="subscribe a no-op callback")
    args = parser.parse_args()
    results = measure(args.reps, args.profile, args.subscriber)
    print(results.pop("profile"))
    for key, value in results.items():
        print(f"{key:>30}: {value}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
