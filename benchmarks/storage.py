"""Storage benchmark: the live writer against bluesky-tiled-plugins' TiledWriter, side by side.

Run: `.venv/bin/python benchmarks/storage.py [--events 100] [--runs 3] [--cache DIR]`. One Tiled
server (`teststand tiled serve`, its own process) takes every writer's runs of the same plan over
soft-signal devices; the last stdout line is one JSON object.

- `added_ms_per_event`: RunEngine time per event with the writer minus without it, the per-run
  cost taken out (long run minus one-event run; goal <= 1 ms).
- `visibility_p50_s`, `visibility_p99_s`: delay from an event's time to its first sight by a
  second process polling Tiled (goal p99 <= 1 s).
- `fixed_ms_per_run`: RunEngine time of a one-event run with the writer minus without it (goal
  <= 100 ms); for the live writer `stored_ms_per_run` adds the background time until the run is
  verified in Tiled.
- `catalog`: searches among 10,000 and 100,000 runs on SQLite and PostgreSQL, without and with
  the catalog indexes (`benchmarks/catalog_searches.py`, which says what is timed; the catalogs
  are generated once and cached under `--cache`). `--catalog-only` runs just this part.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from bluesky import RunEngine
from bluesky_tiled_plugins import TiledWriter
from catalog_searches import measure_all, percentile
from ophyd_async.core import StandardReadable, StandardReadableFormat, init_devices, soft_signal_rw

from teststand.callbacks.tiled_writer import LiveTiledWriter
from teststand.storage.client import connect

TESTSTAND = str(Path(sys.executable).with_name("teststand"))
MODULES = 300


class Box(StandardReadable):
    def __init__(self, name: str = "") -> None:
        with self.add_children_as_readables(StandardReadableFormat.HINTED_SIGNAL):
            self.volts = soft_signal_rw(float, 1.0, units="V")
            self.amps = soft_signal_rw(float, 1e-6, units="A")
        super().__init__(name=name)


def plan(box: Box, events: int, tag: str, pause: float = 0.0) -> Generator[Any]:
    @bpp.run_decorator(md={"bench_tag": tag, "module_id": "M-bench", "test": "iv"})
    def inner() -> Generator[Any]:
        for i in range(events):
            yield from bps.mv(box.volts, float(i))
            yield from bps.trigger_and_read([box])
            if pause:
                yield from bps.sleep(pause)

    return (yield from inner())


@contextmanager
def served(data: Path) -> Iterator[tuple[str, str]]:
    command = [TESTSTAND, "tiled", "serve", "--port", "0", "--data", str(data)]
    server = subprocess.Popen(
        [*command, "--log-file", str(data / "server.log")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        key = server.stdout.readline().split()[1]
        yield url, key
    finally:
        server.terminate()
        server.wait(30)


def poll(url: str, key: str, tag: str) -> None:
    """Second process: print the delay of each event's first sight, as a JSON list."""
    from tiled.queries import Key

    client = connect(url, key)
    print("ready", flush=True)
    deadline = time.time() + 120
    run = None
    while run is None and time.time() < deadline:
        for _, found in client.search(Key("start.bench_tag") == tag).items():
            run = found
    seen: dict[int, float] = {}
    while time.time() < deadline:
        stopped = bool(run.metadata.get("stop")) if run is not None else False
        try:
            table = run["primary"].base["internal"].read(columns=["seq_num", "time"])
        except Exception:  # the stream or its table is not there yet
            table = None
        now = time.time()
        if table is not None:
            for seq, t in zip(table["seq_num"], table["time"], strict=True):
                seen.setdefault(int(seq), now - float(t))
        if stopped and table is not None:
            break
        run = client[run.item["id"]] if run is not None else None
    print(json.dumps(sorted(seen.values())), flush=True)


Factory = Callable[[], Any]


def measure(
    RE: RunEngine, box: Box, writers: dict[str, Factory], events: int, runs: int
) -> dict[str, dict[str, float]]:
    """RunEngine seconds per run, per writer, for `events`-event runs and one-event runs."""
    times: dict[str, dict[str, list[float]]] = {
        n: {"long": [], "short": [], "stored": []} for n in writers
    }
    for repeat in range(runs):
        for name, factory in writers.items():
            for kind, count in (("long", events), ("short", 1)):
                writer = factory()
                token = RE.subscribe(writer) if writer is not None else None
                started = time.perf_counter()
                RE(plan(box, count, f"{name}-{kind}-{repeat}"))
                elapsed = time.perf_counter() - started
                if isinstance(writer, LiveTiledWriter):
                    writer.wait(300)
                    if kind == "short":
                        times[name]["stored"].append(time.perf_counter() - started)
                    writer.close()
                if token is not None:
                    RE.unsubscribe(token)
                times[name][kind].append(elapsed)
    return {
        name: {kind: statistics.median(v) if v else 0.0 for kind, v in kinds.items()}
        for name, kinds in times.items()
    }


def visibility(url: str, key: str, RE: RunEngine, box: Box, name: str, writer: Any) -> list[float]:
    tag = f"vis-{name}-{time.time()}"
    poller = subprocess.Popen(
        [sys.executable, __file__, "--poll", url, key, tag], stdout=subprocess.PIPE, text=True
    )
    assert poller.stdout is not None
    poller.stdout.readline()
    token = RE.subscribe(writer)
    RE(plan(box, 50, tag, pause=0.02))
    RE.unsubscribe(token)
    if isinstance(writer, LiveTiledWriter):
        writer.close()
    delays: list[float] = json.loads(poller.stdout.readline())
    poller.wait(60)
    return delays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--catalog-runs", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "ts-catalogs")
    parser.add_argument("--catalog-only", action="store_true", help="only the catalog searches")
    parser.add_argument("--poll", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.poll:
        poll(*args.poll)
        return
    result: dict[str, Any] = {}
    if not args.catalog_only:
        result.update(writers(args.events, args.runs))
    result["catalog"] = measure_all(args.cache, args.catalog_runs)
    print(json.dumps(result))


def writers(events: int, runs: int) -> dict[str, Any]:
    """The writers' figures (see the module docstring)."""
    RE = RunEngine(call_returns_result=False)
    with init_devices():
        box = Box()
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, served(Path(tmp)) as (url, key):
        client = connect(url, key)
        journal = Path(tmp) / "journal"
        writers: dict[str, Factory] = {
            "none": lambda: None,
            "teststand": lambda: LiveTiledWriter(lambda: client, journal),
            "tiledwriter_batch1": lambda: TiledWriter(client, batch_size=1),
            "tiledwriter_default": lambda: TiledWriter(client),
        }
        times = measure(RE, box, writers, events, runs)
        base = times.pop("none")
        for name, t in times.items():
            figures = {
                "added_ms_per_event": (t["long"] - t["short"] - base["long"] + base["short"])
                / (events - 1)
                * 1e3,
                "fixed_ms_per_run": (t["short"] - base["short"]) * 1e3,
            }
            if t["stored"]:
                figures["stored_ms_per_run"] = (t["stored"] - base["short"]) * 1e3
            delays = visibility(url, key, RE, box, name, writers[name]())
            figures["visibility_p50_s"] = percentile(delays, 0.5)
            figures["visibility_p99_s"] = percentile(delays, 0.99)
            figures["events_seen"] = len(delays)
            result[name] = {k: round(v, 3) for k, v in figures.items()}
            print(name, json.dumps(result[name]), flush=True)
    ours, batch1 = result["teststand"], result["tiledwriter_batch1"]
    result["ratio_added_per_event_vs_batch1"] = round(
        ours["added_ms_per_event"] / batch1["added_ms_per_event"], 4
    )
    result["ratio_fixed_per_run_vs_default"] = round(
        ours["fixed_ms_per_run"] / result["tiledwriter_default"]["fixed_ms_per_run"], 4
    )
    return result


if __name__ == "__main__":
    main()
