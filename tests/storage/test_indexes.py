"""Catalog indexes: the same answers with and without them, query plans served by them, and a
catalog indexed by `teststand tiled index` still read by a plain `tiled serve`.

The catalogs are small, served in this process by Tiled's own app; every SQL statement Tiled runs
for the searches is captured and its plan checked with EXPLAIN.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from tiled.client import Context, from_context, from_uri

from teststand.app.cli import main
from teststand.storage.catalog import Catalog, module_result, run_module_ids
from teststand.storage.indexes import (
    drop_indexes,
    engine_uri,
    ensure_indexes,
    install_query_translations,
)

T0, HOUR = 1.78e9, 3600.0
MODULES = ["M-1", "M-12", "20UPGM22110427", "M-3"]  # M-1 is a substring of M-12
UNIQUE_KEY = "key_parent_unique_constraint"  # Tiled's (key, parent): it holds parent too
TILED = str(Path(sys.executable).with_name("tiled"))


def run_metadata(i: int) -> dict[str, Any]:
    """Run i of a small, varied catalog: single- and multi-module runs, legacy ones, verdicts."""
    modules = [MODULES[i % 4]] if i % 3 else [MODULES[i % 4], MODULES[(i + 1) % 4]]
    start: dict[str, Any] = {"uid": f"r{i:02d}", "time": T0 + i * HOUR, "module_ids": modules}
    start.update(test=["iv", "cv"][i % 2], stage=["reception", "thermal"][i % 3 % 2])
    start["stand"] = f"stand-{i % 2}"
    if len(modules) == 1:
        start["module_id"] = modules[0]
    if i % 10 == 7:  # written before module_ids existed
        del start["module_ids"]
    metadata: dict[str, Any] = {"start": start, "stop": {"exit_status": "success"}}
    if i % 5:
        metadata["verdict"] = "fail" if i % 4 == 1 else "pass"
    return metadata


RUNS = {f"r{i:02d}": run_metadata(i) for i in range(40)}
SEARCHES: list[dict[str, Any]] = [
    {"module_id": "M-1"},
    {"module_id": "20UPGM22110427", "test": "iv"},
    {"module_id": "M-12", "stage": "thermal", "newest_first": True},
    {"stage": "reception", "stand": "stand-1"},
    {"verdict": "fail", "since": T0 + 5 * HOUR, "until": T0 + 30 * HOUR},
    {"module_id": "M-3", "verdict": "pass", "since": T0 + 10 * HOUR},
    {"since": T0 + 3 * HOUR, "until": T0 + 9 * HOUR},
]


def expected(search: dict[str, Any]) -> list[str]:
    """The uids a search must give, worked out from the metadata without Tiled."""
    found = []
    for uid, md in RUNS.items():
        start = md["start"]
        if "module_id" in search and search["module_id"] not in run_module_ids(start):
            continue
        if any(start.get(k) != search[k] for k in ("test", "stage", "stand") if k in search):
            continue
        if "verdict" in search:  # with a module, that module's own result in the run
            module = search.get("module_id")
            verdict = md.get("verdict") if module is None else module_result(md, module)[1]
            if verdict != search["verdict"]:
                continue
        if not search.get("since", 0) <= start["time"] < search.get("until", 1e12):
            continue
        found.append(uid)
    return found[::-1] if search.get("newest_first") else found


@contextmanager
def served(
    uri: str, files: Path, init: bool = False
) -> Iterator[tuple[Catalog, list[tuple[str, Any]]]]:
    """Tiled's app over the catalog at `uri`, in this process, with its SQL statements captured."""
    from sqlalchemy import event
    from tiled.catalog import from_uri as catalog_from_uri
    from tiled.server.app import build_app

    install_query_translations()
    adapter = catalog_from_uri(uri, writable_storage=[str(files)], init_if_not_exists=init)
    statements: list[tuple[str, Any]] = []

    def capture(*args: Any) -> None:
        statements.append((args[2], args[3]))

    event.listen(adapter.context.engine.sync_engine, "before_cursor_execute", capture)
    with Context.from_app(build_app(adapter)) as context:
        yield Catalog(from_context(context)), statements


def fill(catalog: Catalog) -> None:
    for uid, md in RUNS.items():
        catalog.client.create_container(key=uid, metadata=md)


def results(catalog: Catalog) -> list[list[str]]:
    return [[run.uid for run in catalog.search(**search)] for search in SEARCHES]


def searched(statements: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """The statements that filter runs by their metadata (not the per-run child counts)."""
    pattern = re.compile(r"WHERE .*(JSON_EXTRACT|metadata_fts5|@>|#>|jsonb_to_tsvector)", re.S)
    return [(sql, params) for sql, params in statements if pattern.search(sql)]


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite catalog holding RUNS, made once (Tiled's init runs a subprocess); tests copy it."""
    folder = tmp_path_factory.mktemp("catalog")
    path = folder / "catalog.db"
    with served(f"sqlite+aiosqlite:///{path}", folder, init=True) as (catalog, _):
        fill(catalog)
    return path


@pytest.fixture
def sqlite_catalog(
    filled: Path, tmp_path: Path
) -> Iterator[tuple[Catalog, list[tuple[str, Any]], Path]]:
    path = Path(shutil.copy(filled, tmp_path / "catalog.db"))
    with served(f"sqlite+aiosqlite:///{path}", tmp_path) as (catalog, statements):
        yield catalog, statements, path


def test_searches_give_the_same_runs_with_and_without_indexes(sqlite_catalog: Any) -> None:
    catalog, _, path = sqlite_catalog
    truth = [expected(search) for search in SEARCHES]
    assert all(truth) and results(catalog) == truth
    ensure_indexes(str(path))
    assert results(catalog) == truth
    assert (
        catalog.newest("M-1", "cv").metadata["start"]["uid"]
        == expected({"module_id": "M-1", "test": "cv"})[-1]
    )


def test_sqlite_searches_are_served_by_indexes(sqlite_catalog: Any) -> None:
    catalog, statements, path = sqlite_catalog
    ensure_indexes(str(path))
    statements.clear()
    results(catalog)
    catalog.newest("M-1", "cv")
    checked = searched(statements)
    assert len(checked) >= len(SEARCHES)
    with sqlite3.connect(path) as db:
        for sql, params in checked:
            plan = [row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sql, params)]
            on_nodes = [line for line in plan if re.search(r"\bnodes\b", line)]
            assert on_nodes, (sql, plan)
            for line in on_nodes:  # never a scan, nor all of the root's children
                assert line.startswith("SEARCH nodes"), (sql, plan)
                assert not line.endswith("(parent=?)"), (sql, plan)


def test_index_command_is_idempotent(
    filled: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = Path(shutil.copy(filled, tmp_path / "catalog.db"))
    assert main(["tiled", "index", str(path)]) == 0
    first = capsys.readouterr().out
    assert main(["tiled", "index", f"sqlite:///{path}"]) == 0
    second = capsys.readouterr().out
    assert first.count("created ix_teststand_") == 6 and "present ix_teststand" not in first
    assert second.count("present ix_teststand_") == 6 and "created" not in second
    with sqlite3.connect(path) as db:
        names = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='index'")]
    assert sorted(n for n in names if n.startswith("ix_teststand_")) == sorted(
        n.split()[1] for n in second.splitlines() if "ix_teststand_" in n
    )
    assert len(drop_indexes(str(path))) == 6 and drop_indexes(str(path)) == []


def test_index_command_refuses_what_is_not_a_catalog(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tiled", "index", str(tmp_path / "missing.db")]) == 1
    assert "no SQLite catalog at" in capsys.readouterr().err
    sqlite3.connect(tmp_path / "other.db").execute("CREATE TABLE t (x)").connection.close()
    assert main(["tiled", "index", str(tmp_path / "other.db")]) == 1
    assert "not a Tiled catalog" in capsys.readouterr().err


def test_plain_tiled_serve_reads_an_indexed_catalog(sqlite_catalog: Any) -> None:
    _, _, path = sqlite_catalog
    ensure_indexes(str(path))
    command = [TILED, "serve", "catalog", str(path), "--api-key", "secret", "--port", "0"]
    server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stderr is not None
        url = ""
        for line in server.stderr:
            found = re.search(r"Uvicorn running on \S*?(http://[0-9.:]+)", line)  # ANSI colours
            if found:
                url = found.group(1)
                break
        assert url, "tiled serve did not start"
        catalog = Catalog(from_uri(url, api_key="secret"))
        assert results(catalog) == [expected(search) for search in SEARCHES]
        assert catalog.run("r03").metadata["start"]["stand"] == "stand-1"
    finally:
        server.terminate()
        server.wait(30)


def test_postgresql_searches_are_served_by_indexes(postgres: str, tmp_path: Path) -> None:
    with served(postgres, tmp_path, init=True) as (catalog, statements):
        fill(catalog)
        truth = [expected(search) for search in SEARCHES]
        assert results(catalog) == truth
        report = ensure_indexes(postgres)
        assert report.created == ["ix_teststand_start_time"]
        assert ensure_indexes(postgres).present == ["ix_teststand_start_time"]
        statements.clear()
        assert results(catalog) == truth
        checked = searched(statements)
    assert len(checked) >= len(SEARCHES)
    for sql, params in checked:
        plan = asyncio.run(_postgres_plan(postgres, sql, params))
        assert "Seq Scan on nodes" not in plan, (sql, plan)


async def _postgres_plan(uri: str, sql: str, params: Any) -> str:
    """EXPLAIN with only the indexes that can serve metadata conditions (rolled back)."""
    import asyncpg  # type: ignore[import-untyped]

    connection = await asyncpg.connect(engine_uri(uri).replace("+asyncpg", ""))
    try:
        async with connection.transaction():
            await connection.execute("SET LOCAL enable_seqscan = off")
            await connection.execute("DROP INDEX ix_nodes_parent, ix_nodes_parent_id")
            await connection.execute(
                "ALTER TABLE nodes DROP CONSTRAINT key_parent_unique_constraint"
            )
            rows = await connection.fetch("EXPLAIN " + sql, *params)
            plan = "\n".join(row[0] for row in rows)
            raise _RolledBack(plan)
    except _RolledBack as done:
        return str(done)
    finally:
        await connection.close()


class _RolledBack(Exception):
    """Leaves the EXPLAIN transaction (and so undoes its DROPs)."""
