"""`teststand.storage.catalog` over a real Tiled server: searches return the right runs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from tiled.queries import Key

from teststand.storage.catalog import Catalog, RunNotFound
from teststand.storage.runwriter import write_run

DAY = 86400.0
T0 = datetime(2026, 3, 1, tzinfo=UTC).timestamp()
RUNS = [  # uid, module, stage, test, stand, day, verdict
    ("r1", "M-1", "reception", "iv", "stand-a", 0, "pass"),
    ("r2", "M-1", "reception", "cv", "stand-a", 1, "pass"),
    ("r3", "M-1", "thermal", "iv", "stand-b", 2, "fail"),
    ("r4", "M-2", "reception", "iv", "stand-a", 3, None),
    ("r5", "M-1", "thermal", "iv", "stand-b", 4, "pass"),
]


def run_documents(uid: str, start_md: dict[str, Any], t: float) -> list[tuple[str, dict[str, Any]]]:
    key = {"dtype": "number", "shape": [], "source": "sim", "units": "A"}
    desc = {"uid": f"{uid}-d", "run_start": uid, "time": t, "name": "primary"}
    desc["data_keys"] = {"i": key}
    events = [
        (
            "event",
            {
                "uid": f"{uid}-e{n}",
                "descriptor": f"{uid}-d",
                "time": t + n,
                "seq_num": n,
                "data": {"i": n * 1e-6},
                "timestamps": {"i": t + n},
            },
        )
        for n in (1, 2, 3)
    ]
    stop = {"uid": f"{uid}-s", "run_start": uid, "time": t + 9, "exit_status": "success"}
    return [
        ("start", {"uid": uid, "time": t, **start_md}),
        ("descriptor", desc),
        *events,
        ("stop", stop),
    ]


@pytest.fixture(scope="module")
def catalog(tiled_server: Any) -> Catalog:
    client = tiled_server.client()
    catalog = Catalog(client)
    for uid, module, stage, test, stand, day, verdict in RUNS:
        md = {"module_id": module, "stage": stage, "test": test, "stand": stand}
        write_run(client, run_documents(uid, md, T0 + day * DAY))
        if verdict:
            catalog.set_verdict(uid, verdict)
    return catalog


def uids(found: list[Any]) -> list[str]:
    return [run.uid for run in found]


def test_search_by_each_field(catalog: Catalog) -> None:
    assert uids(catalog.search(module_id="M-1")) == ["r1", "r2", "r3", "r5"]
    assert uids(catalog.search(module_id="M-1", test="iv")) == ["r1", "r3", "r5"]
    assert uids(catalog.search(stage="thermal")) == ["r3", "r5"]
    assert uids(catalog.search(stand="stand-a", test="iv")) == ["r1", "r4"]
    assert uids(catalog.search(verdict="fail")) == ["r3"]
    assert uids(catalog.search(module_id="M-2", verdict="pass")) == []


def test_search_by_date_range(catalog: Catalog) -> None:
    since = datetime.fromtimestamp(T0 + 1 * DAY, UTC)
    assert uids(catalog.search(since=since, until=T0 + 3 * DAY)) == ["r2", "r3"]
    assert uids(catalog.search(module_id="M-1", since=T0 + 2 * DAY, newest_first=True)) == [
        "r5",
        "r3",
    ]


def test_summary_fields(catalog: Catalog) -> None:
    (summary,) = catalog.search(module_id="M-1", test="cv")
    assert (summary.stage, summary.stand, summary.verdict) == ("reception", "stand-a", "pass")
    assert summary.exit_status == "success" and summary.time == T0 + DAY


def test_newest_run_of_a_test(catalog: Catalog) -> None:
    run = catalog.newest("M-1", "iv")
    assert run.metadata["start"]["uid"] == "r5"
    with pytest.raises(RunNotFound, match="no run of test 'qualification'"):
        catalog.newest("M-1", "qualification")


def test_data_as_xarray_and_pandas(catalog: Catalog) -> None:
    assert list(catalog.xarray("r2")["i"].values) == [1e-6, 2e-6, 3e-6]
    frame = catalog.pandas("r2")
    assert list(frame["i"]) == [1e-6, 2e-6, 3e-6]
    with pytest.raises(RunNotFound, match="no stream 'baseline'"):
        catalog.pandas("r2", "baseline")


def test_plain_tiled_queries_match_the_helper(catalog: Catalog) -> None:
    plain = catalog.client.search(Key("start.module_id") == "M-1").search(Key("start.test") == "iv")
    assert sorted(plain) == ["r1", "r3", "r5"]
    assert len(Catalog.queries(module_id="M-1", verdict="pass", since=0.0)) == 3
