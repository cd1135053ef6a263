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


def test_searches_read_every_page(catalog: Catalog) -> None:
    paged = Catalog(catalog.client, page=2)
    assert uids(paged.search(module_id="M-1")) == ["r1", "r2", "r3", "r5"]
    assert uids(paged.search(since=T0, until=T0 + 5 * DAY, newest_first=True)) == [
        "r5",
        "r4",
        "r3",
        "r2",
        "r1",
    ]
    assert [uid for uid, _ in paged.runs(test="iv")] == ["r1", "r3", "r4", "r5"]


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
    assert summary.exit_status == "success"
    assert summary.time == datetime.fromtimestamp(T0 + DAY, UTC) and summary.time.tzinfo


def test_a_module_search_gives_the_modules_own_result(tiled_server: Any) -> None:
    """A two-module run that failed for M-4 alone: M-3's summary says pass, with its slot."""
    client = tiled_server.client().create_container("module-results")
    slots = {"1": {"module_id": "M-3"}, "2": {"module_id": "M-4"}}
    md = {"module_ids": ["M-3", "M-4"], "slots": slots, "test": "iv", "stage": "reception"}
    write_run(client, run_documents("m1", md, T0))
    reasons = ["breakdown at 80 V"]
    analysis = {"slots": {"1": {"verdict": "pass"}, "2": {"verdict": "fail", "reasons": reasons}}}
    client["m1"].update_metadata({"verdict": "fail", "analysis": analysis})
    catalog = Catalog(client)
    (three,) = catalog.search(module_id="M-3")
    assert (three.module_id, three.slot, three.verdict, three.run_verdict) == (
        "M-3",
        "1",
        "pass",
        "fail",
    )
    (four,) = catalog.search(module_id="M-4")
    assert (four.module_id, four.verdict, four.reasons) == ("M-4", "fail", tuple(reasons))
    assert uids(catalog.search(module_id="M-3", verdict="pass")) == ["m1"]
    assert catalog.search(module_id="M-3", verdict="fail") == []
    assert isinstance(three.time, datetime) and three.time.timestamp() == T0


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


def test_a_table_with_dates_named_columns_units_and_the_run(tiled_server: Any) -> None:
    """The bias key `slotN` reads as `slotN-bias`; per slot bias, current, temperature, in
    slot order whatever the order of the keys; units and the run in `attrs`."""
    client = tiled_server.client().create_container("tables")
    units = {"slot2-temperature": "degC", "slot2-leakage_current": "A", "slot2": "V"}
    units |= {"iv-slot1_state": None, "slot1-leakage_current": "A", "slot1": "V", "iv_voltage": "V"}
    docs = run_documents("t1", {"module_ids": ["M-5", "M-6"], "test": "iv", "operator": "ana"}, T0)
    keys = {
        key: {"dtype": "number", "shape": [], "source": "sim", "units": u}
        for key, u in units.items()
    }
    keys["iv-slot1_state"] |= {"dtype": "string"}
    docs[1][1]["data_keys"] = keys
    for n, (_, event) in enumerate(docs[2:5]):
        event["data"] = {key: "measuring" if key.endswith("state") else float(n) for key in keys}
        event["timestamps"] = {key: event["time"] for key in keys}
    write_run(client, docs)
    catalog = Catalog(client)
    table = catalog.pandas("t1")
    assert list(table.columns) == [
        "iv_voltage",
        "slot1-bias",
        "slot1-leakage_current",
        "iv-slot1_state",
        "slot2-bias",
        "slot2-leakage_current",
        "slot2-temperature",
    ]
    assert list(table.index) == [datetime.fromtimestamp(T0 + n, UTC) for n in (1, 2, 3)]
    assert table.index.name == "time" and table.index.tz is not None
    assert (
        table.attrs["units"]["slot2-bias"] == "V"
        and table.attrs["units"]["slot2-temperature"] == "degC"
    )
    assert table.attrs["data_keys"]["slot1-bias"] == "slot1"
    assert table.attrs["uid"] == "t1" and table.attrs["start"]["operator"] == "ana"
    assert table.attrs["stop"]["exit_status"] == "success"
    data = catalog.xarray("t1")
    assert data["slot1-leakage_current"].attrs["units"] == "A"
    assert data["slot1"].attrs["long_name"] == "slot 1 bias voltage"
    assert data.attrs["start"]["module_ids"] == ["M-5", "M-6"]


def test_plain_tiled_queries_match_the_helper(catalog: Catalog) -> None:
    plain = catalog.client.search(Key("start.module_id") == "M-1").search(Key("start.test") == "iv")
    assert sorted(plain) == ["r1", "r3", "r5"]
    assert len(Catalog.queries(module_id="M-1", verdict="pass", since=0.0)) == 3
