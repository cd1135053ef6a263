"""Catalog search benchmark: finding runs among 10,000 and 100,000, before and after the indexes.

Run: `.venv/bin/python benchmarks/catalog_searches.py [--sizes 10000 100000] [--cache DIR]`
(`benchmarks/storage.py` runs it too). For SQLite and for PostgreSQL (a server started here, its
data kept under `--cache`), each catalog is generated once and cached: BlueskyRun containers with
a stream and a table each (three nodes per run), written by bulk SQL through Tiled's own table
definitions, about 30 runs per module, a third of them holding four modules. Then, in one run:

- `before`: the teststand indexes dropped, a plain `tiled serve`, the former queries
  (`Contains("start.module_ids")` and `Key("start.module_id") ==`, merged);
- `after`: `teststand tiled serve` (indexes made at start, SQLite translations), `Catalog`.

Timed over HTTP, p50 and p95 in ms of: `module` (one module's runs), `newest` (the newest IV run of
a module), `verdict_week` (failed runs in one week). Goal: p95 <= 100 ms at 100,000 runs, and a
time that grows no faster than the runs found (`found`, the median count). The last stdout line
is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from tiled.queries import Contains, Key

from teststand.storage.catalog import Catalog, RunNotFound, run_module_ids
from teststand.storage.client import connect
from teststand.storage.indexes import drop_indexes

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RUNS_PER_MODULE, T0, SPACING, WEEK = 30, 1.75e9, 600.0, 7 * 86400.0
STAGES, TESTS = ("reception", "thermal", "final"), ("iv", "cv", "it", "qualification")
REPEATS = 20
KEY = "bench"


def modules(runs: int) -> int:
    """Module count: a run holds two modules on average (one, or four in a thermal run)."""
    return max(2 * runs // RUNS_PER_MODULE, 10)


def run_metadata(i: int, count: int) -> dict[str, Any]:
    """Run i of `count`: thermal runs hold four modules (module_ids only), the others one."""
    stage, test, n = STAGES[i % 3], TESTS[i % 4], modules(count)
    first = (i * 7919) % n
    ids = [f"M-{(first + k) % n:05d}" for k in range(4 if stage == "thermal" else 1)]
    start: dict[str, Any] = {"uid": f"run-{i:06d}", "time": T0 + i * SPACING, "scan_id": i}
    start.update(plan_name=f"{test}_scan", stage=stage, test=test, stand=f"stand-{i % 5}")
    start.update(module_ids=ids, operator="someone", versions={"bluesky": "1.14", "tiled": "0.2"})
    start["slots"] = {str(k + 1): {"module_id": m, "hv_channel": k} for k, m in enumerate(ids)}
    if len(ids) == 1:
        start["module_id"] = ids[0]
    stop = {"uid": f"run-{i:06d}-s", "time": start["time"] + 300, "num_events": {"primary": 40}}
    stop["exit_status"] = "success" if i % 11 else "fail"
    metadata: dict[str, Any] = {"start": start, "stop": stop}
    if i % 13:
        metadata["verdict"] = "pass" if i % 7 else "fail"
    return metadata


def _node(key: str, parent: int, metadata: dict[str, Any], spec: str | None) -> dict[str, Any]:
    specs = [{"name": spec, "version": "3.0"}] if spec else []
    return dict(
        key=key, parent=parent, structure_family="container", metadata=metadata, specs=specs
    )


async def _fill(uri: str, count: int, files: Path) -> None:
    """Tiled's schema (its own init), then the runs and their children by bulk INSERTs."""
    from sqlalchemy import insert, text
    from tiled.catalog import from_uri, orm

    adapter = from_uri(uri, writable_storage=[str(files)], init_if_not_exists=True)
    nodes = orm.Node.__table__

    async def children(
        connection: Any, where: str, key: str, md: dict[str, Any], spec: Any
    ) -> None:
        ids = (await connection.execute(text(f"SELECT id FROM nodes WHERE {where}"))).scalars()
        rows = [_node(key, parent, md, spec) for parent in ids]
        for k in range(0, len(rows), 5000):
            await connection.execute(insert(nodes), rows[k : k + 5000])

    async with adapter.context.engine.begin() as connection:
        gin: list[str] = []
        if connection.dialect.name == "postgresql":  # a GIN index builds far faster in one go
            found = await connection.execute(
                text(
                    "SELECT indexname, indexdef FROM pg_indexes "
                    "WHERE tablename = 'nodes' AND indexdef LIKE '%USING gin%'"
                )
            )
            for name, definition in found.all():
                gin.append(definition)
                await connection.execute(text(f"DROP INDEX {name}"))
        for k in range(0, count, 5000):
            rows = [
                _node(f"run-{i:06d}", 0, run_metadata(i, count), "BlueskyRun")
                for i in range(k, min(count, k + 5000))
            ]
            await connection.execute(insert(nodes), rows)
        stream = {"hints": {"fields": ["bias", "current"]}}
        await children(connection, "parent = 0", "primary", stream, "BlueskyEventStream")
        await children(connection, "key = 'primary'", "internal", {}, None)
        for definition in gin:
            await connection.execute(text(definition))
    await adapter.context.engine.dispose()


def cached_catalog(uri: str, count: int, marker: Path) -> None:
    if marker.exists():
        return
    started = time.perf_counter()
    files = marker.parent / "files"
    files.mkdir(parents=True, exist_ok=True)
    asyncio.run(_fill(uri, count, files))
    marker.write_text(str(count))
    print(f"  built {uri.split('@')[-1]} ({count} runs) in {time.perf_counter() - started:.0f} s")


@contextmanager
def plain_tiled(uri: str) -> Iterator[Any]:
    """A plain `tiled serve catalog` (read-only) over the catalog: the client."""
    command = [str(BIN / "tiled"), "serve", "catalog", uri, "--api-key", KEY, "--port", "0"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stderr is not None
        for line in server.stderr:
            found = re.search(r"Uvicorn running on \S*?(http://[0-9.:]+)", line)
            if found:
                yield connect(found.group(1), KEY)
                break
        else:
            raise RuntimeError("tiled serve did not start")
    finally:
        server.terminate()
        server.wait(60)


@contextmanager
def teststand_tiled(uri: str, data: Path) -> Iterator[Any]:
    """`teststand tiled serve --catalog uri` (which makes the indexes): the client."""
    command = [str(BIN / "teststand"), "tiled", "serve", "--catalog", uri, "--port", "0"]
    command += ["--data", str(data), "--api-key", KEY, "--log-file", str(data / "server.log")]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        yield connect(server.stdout.readline().strip(), KEY)
    finally:
        server.terminate()
        server.wait(60)


def old_runs(client: Any, module: str, *extra: Any, newest_first: bool = False) -> list[str]:
    """The former `Catalog.runs(module_id=...)`: two unindexed searches merged by start time."""

    def sorted_items(queries: list[Any]) -> Iterator[tuple[str, Any]]:
        results = client
        for query in queries:
            results = results.search(query)
        yield from results.sort(("start.time", -1 if newest_first else 1)).items()

    listed = sorted_items([Contains("start.module_ids", module), *extra])
    single = sorted_items([Key("start.module_id") == module, *extra])
    seen: list[str] = []
    for uid, run in heapq.merge(
        listed, single, key=lambda item: item[1].metadata["start"]["time"], reverse=newest_first
    ):
        if uid not in seen and module in run_module_ids(run.metadata["start"]):
            seen.append(uid)
    return seen


def searches(client: Any, count: int, after: bool) -> dict[str, Callable[[int], int]]:
    """name -> (repeat -> runs found) for the three searches, the former or the new way."""
    catalog = Catalog(client)

    def module(i: int) -> str:
        return f"M-{(i * 37) % modules(count):05d}"

    def week(i: int) -> tuple[float, float]:
        since = T0 + (i * 9973 * SPACING) % (count * SPACING - WEEK)
        return since, since + WEEK

    def newest(i: int) -> int:
        try:
            return int(catalog.newest(module(i), "iv") is not None)
        except RunNotFound:
            return 0

    if after:
        return {
            "module": lambda i: len(catalog.search(module_id=module(i))),
            "newest": newest,
            "verdict_week": lambda i: len(
                catalog.search(verdict="fail", since=week(i)[0], until=week(i)[1])
            ),
        }

    def old_verdict(i: int) -> int:
        since, until = week(i)
        found = client.search(Key("verdict") == "fail").search(Key("start.time") >= since)
        return len(list(found.search(Key("start.time") < until).sort(("start.time", 1)).items()))

    return {
        "module": lambda i: len(old_runs(client, module(i))),
        "newest": lambda i: len(old_runs(client, module(i), Key("start.test") == "iv")[:1]),
        "verdict_week": old_verdict,
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed(calls: dict[str, Callable[[int], int]]) -> dict[str, dict[str, float]]:
    figures = {}
    for name, call in calls.items():
        call(REPEATS)  # warm up
        durations, found = [], []
        for i in range(REPEATS):
            started = time.perf_counter()
            found.append(call(i))
            durations.append(time.perf_counter() - started)
        figures[name] = {
            "p50_ms": round(statistics.median(durations) * 1e3, 1),
            "p95_ms": round(percentile(durations, 0.95) * 1e3, 1),
            "found": statistics.median(found),
        }
    return figures


def measure(uri: str, count: int, data: Path) -> dict[str, Any]:
    drop_indexes(uri)
    with plain_tiled(uri) as client:
        before = timed(searches(client, count, after=False))
    print(f"  {count} before {json.dumps(before)}", flush=True)
    started = time.perf_counter()
    with teststand_tiled(uri, data) as client:
        startup = time.perf_counter() - started
        after = timed(searches(client, count, after=True))
    print(f"  {count} after {json.dumps(after)}", flush=True)
    ratios = {name: round(after[name]["p95_ms"] / before[name]["p95_ms"], 3) for name in after}
    return {"before": before, "after": after, "p95_ratio": ratios, "serve_s": round(startup, 1)}


@contextmanager
def postgres(cache: Path) -> Iterator[str | None]:
    """A PostgreSQL server over data kept in `cache` (started and stopped here), or None."""
    sys.path.insert(0, str(ROOT / "tests"))
    from helpers import postgres_bin, postgres_cluster

    bindir = postgres_bin()
    if bindir is None:
        print("PostgreSQL binaries not found: PostgreSQL skipped", flush=True)
        yield None
        return
    with postgres_cluster(bindir, cache / "postgres") as uri:
        yield uri


def _create_database(server: str, name: str, fresh: bool) -> str:
    """The database `name` on `server`, created when missing; emptied first when `fresh` (a
    catalog whose generation was interrupted)."""
    import asyncpg  # type: ignore[import-untyped]

    async def create() -> None:
        connection = await asyncpg.connect(server)
        try:
            if fresh:
                await connection.execute(f"DROP DATABASE IF EXISTS {name}")
            exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname=$1", name)
            if not exists:
                await connection.execute(f"CREATE DATABASE {name}")
        finally:
            await connection.close()

    asyncio.run(create())
    return server.rsplit("/", 1)[0] + "/" + name


def measure_all(cache: Path, sizes: list[int]) -> dict[str, Any]:
    """{backend: {size: figures}} for SQLite and PostgreSQL."""
    cache.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"sqlite": {}, "postgresql": {}}
    with ExitStack() as stack:
        server = stack.enter_context(postgres(cache))
        for count in sizes:
            folder = cache / f"sqlite-{count}"
            if not (folder / "complete").exists():
                shutil.rmtree(folder, ignore_errors=True)
            uri = f"sqlite:///{folder / 'catalog.db'}"
            cached_catalog(uri, count, folder / "complete")
            print(f"SQLite, {count} runs", flush=True)
            result["sqlite"][str(count)] = measure(uri, count, folder)
            if server is None:
                continue
            folder = cache / f"postgresql-{count}"
            fresh = not (folder / "complete").exists()
            pg = _create_database(server, f"bench_{count}", fresh)
            cached_catalog(pg, count, folder / "complete")
            print(f"PostgreSQL, {count} runs", flush=True)
            result["postgresql"][str(count)] = measure(pg, count, folder)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "ts-catalogs")
    args = parser.parse_args()
    print(json.dumps(measure_all(args.cache, args.sizes)))


if __name__ == "__main__":
    main()
