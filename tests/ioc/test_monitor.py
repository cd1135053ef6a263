"""`teststand monitor`: the IOC's simulated stand written by the monitor into a real `influxd`
(Debian's InfluxDB 1.x, auth on), through its journal while the database is down."""

from __future__ import annotations

import asyncio
import bisect
import itertools
import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from bluesky import RunEngine
from bluesky.plans import count
from caproto.sync.client import write
from caproto.threading.client import Context
from conftest import PREFIX, TESTSTAND, Ioc, Sims, ioc_data, wait_for
from helpers import run, small_tmpfs, stand_dict
from influx import PASSWORD, USER, Influxd, VictoriaMetrics, free_port

from teststand.app.ioc.process import terminate
from teststand.app.monitor.database import Database
from teststand.app.monitor.journal import Journal
from teststand.app.monitor.runs import RunEvents
from teststand.app.monitor.shipper import Shipper
from teststand.config import ConfigError, load_stand
from teststand.stand import TestStand
from teststand.storage.monitoring import DatabaseConfig

DB = "teststand"
#: s: the heartbeat period of every PV in these tests (a point at least this often).
MAX_PERIOD = 2.0


@pytest.fixture(scope="module")
def influxd() -> Iterator[Influxd]:
    started = Influxd()
    started.create(DB)
    yield started
    started.close()


def monitored_dict(sims: Sims, url: str, journal: Path, **database: Any) -> dict[str, Any]:
    data = ioc_data(sims, 200.0)
    data["monitoring"] = {
        "database": {"url": url, "db": DB, "user": USER, "password": PASSWORD, **database},
        "journal_dir": str(journal),
        "flush_period": 0.2,
        "stats_period": 1.0,
        "default": {"max_period": MAX_PERIOD},
        "pvs": {"HV:CH*:CURRENT": {"deadband": 1e-9, "max_period": MAX_PERIOD}},
    }
    return data


class Monitor:
    """A `teststand monitor` process."""

    def __init__(self, data: dict[str, Any], directory: Path, prefix: str = PREFIX) -> None:
        self.file = directory / "stand.yaml"
        self.file.write_text(yaml.safe_dump(data))
        self.log = directory / "monitor.log"
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                [TESTSTAND, "monitor", str(self.file), "--prefix", prefix], stderr=log
            )

    def status(self) -> str:
        return subprocess.run(
            [TESTSTAND, "monitor", "status", str(self.file)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    def backlog(self) -> int:
        """Points in the journal (read here; `status` is the command that shows them)."""
        data = yaml.safe_load(self.file.read_text())["monitoring"]
        return Journal(Path(data["journal_dir"]), 10**9).backlog().points

    def stop(self) -> None:
        """Terminate (the monitor flushes and exits); killed if it does not within 30 s."""
        terminate(self.process, 30.0)

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture(scope="module")
def monitor(
    influxd: Influxd, ioc: Ioc, sims: Sims, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Monitor]:
    directory = tmp_path_factory.mktemp("monitor")
    with Monitor(monitored_dict(sims, influxd.url, directory / "journal"), directory) as started:
        expected = {"hv", "slot", "coldbox", "chiller", "teststand_monitor"}
        wait_for(lambda: expected <= measurements(influxd), 60, "the first points")
        yield started


def measurements(influxd: Influxd) -> set[str]:
    series = influxd.query("SHOW MEASUREMENTS", DB)
    return {row[0] for row in series[0]["values"]} if series else set()


def last(influxd: Influxd, field: str, measurement: str, where: str = "") -> Any:
    series = influxd.query(f'SELECT last("{field}") FROM "{measurement}" {where}', DB)
    return series[0]["values"][0][1] if series else None


def test_values_units_and_tags_arrive(influxd: Influxd, monitor: Monitor, sims: Sims) -> None:
    wait_for(lambda: last(influxd, "voltage_V", "hv", "WHERE channel='1'") is not None, 30)

    def fields() -> set[str]:
        return {row[0] for row in influxd.query('SHOW FIELD KEYS FROM "slot"', DB)[0]["values"]}

    wanted = {"bias_V", "leakage_current_A", "module_id"}
    wait_for(lambda: wanted <= fields(), 30, f"fields {wanted}")
    stand = yaml.safe_load(monitor.file.read_text())
    ids = {slot["module"]["id"] for slot in stand["slots"].values() if slot.get("module")}

    def module_ids() -> set[str]:
        tags = influxd.query('SHOW TAG VALUES FROM "slot" WITH KEY = "module_id"', DB)
        return {row[1] for row in tags[0]["values"]}

    wait_for(lambda: ids <= module_ids(), 30, f"module ids {ids}")  # slot by slot, when loaded
    assert last(influxd, "points_written", "teststand_monitor") > 0


def test_bias_steps_show_up_within_2_s(
    RE: RunEngine, served: TestStand, influxd: Influxd, monitor: Monitor
) -> None:
    run(RE, lambda: served.hv.channels[0].on())  # type: ignore[attr-defined]
    for target in (20.0, 40.0, 60.0):
        run(RE, lambda target=target: served.slots[1].set(target))
        settled = time.monotonic()
        wait_for(
            lambda target=target: (
                abs((last(influxd, "bias_V", "slot", "WHERE slot='1'") or 0) - target) < 2
            ),
            10,
            f"{target} V in the database",
        )
        assert time.monotonic() - settled < 2.0 + 1.0  # the query's own round trip on a busy box


def test_a_database_outage_loses_nothing(
    RE: RunEngine, served: TestStand, influxd: Influxd, monitor: Monitor
) -> None:
    """influxd killed for 10 s during a ramp: afterwards every update the test itself saw over
    CA is in the database once, and no PV has a gap longer than its maximum period."""
    seen: list[tuple[float, float]] = []
    context = Context()
    (pv,) = context.get_pvs(PREFIX + "SLOT2:BIAS")
    subscription = pv.subscribe(data_type="time")
    subscription.add_callback(
        lambda sub, response: seen.append((response.metadata.timestamp, float(response.data[0])))
    )
    start_ns = time.time_ns()
    run(RE, lambda: served.hv.channels[1].on())  # type: ignore[attr-defined]
    influxd.stop()
    down_ns = time.time_ns()
    try:
        run(RE, lambda: served.slots[2].set(30.0))
        time.sleep(10)
        up_ns = time.time_ns()
        assert monitor.backlog() > 0
        status = monitor.status()
        match = re.search(r": (\d+) points", status)
        assert match and int(match.group(1)) > 0, status
        assert f"monitor running: pid {monitor.process.pid}\n" in status
    finally:
        influxd.start()
    run(RE, lambda: served.slots[2].set(0.0))
    subscription.clear()
    context.disconnect()
    end_ns = time.time_ns()
    wait_for(lambda: monitor.backlog() == 0, 60, "the journal to drain")
    time.sleep(1.0)
    rows = influxd.query(
        f"SELECT bias_V FROM slot WHERE slot='2' AND time >= {start_ns} AND time <= {end_ns}", DB
    )[0]["values"]
    stamps = [row[0] for row in rows]
    assert stamps == sorted(set(stamps))
    for stamp, value in seen:  # each update the test saw is stored (times agree within 2 µs)
        if start_ns <= stamp * 1e9 <= end_ns - 1e9:
            at = bisect.bisect_left(stamps, int(stamp * 1e9) - 2000)
            assert at < len(stamps) and abs(stamps[at] - stamp * 1e9) < 2000, stamp
            assert rows[at][1] == pytest.approx(value), stamp
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert max(gaps) < (MAX_PERIOD + 4.0) * 1e9  # far below the 10 s outage, on a busy machine
    inside = [stamp for stamp in stamps if down_ns <= stamp <= up_ns]
    assert len(inside) >= 10 / (MAX_PERIOD + 4.0), "points written while the database was down"


def test_a_wrong_password_or_database_stops_with_a_clear_message(
    influxd: Influxd, ioc: Ioc, sims: Sims, tmp_path: Path
) -> None:
    for database, words in (
        ({"password": "wrong"}, "check the user/password"),
        ({"db": "nosuchdb"}, "does not exist"),
    ):
        data = monitored_dict(sims, influxd.url, tmp_path / "journal", **database)
        with Monitor(data, tmp_path) as started:
            assert started.process.wait(60) == 1
        assert words in started.log.read_text()


def test_an_unreachable_database_journals_and_sends_later(
    influxd: Influxd, ioc: Ioc, sims: Sims, tmp_path: Path
) -> None:
    journal = tmp_path / "journal"
    unreachable = f"http://127.0.0.1:{free_port()}"
    with Monitor(monitored_dict(sims, unreachable, journal), tmp_path) as down:
        wait_for(lambda: down.backlog() > 0, 60, "points in the journal")
    assert f"monitor not running: pid {down.process.pid} has exited" in down.status()
    backlog = sorted(journal.glob("*.lp"))
    first = backlog[0].read_text().splitlines()[0]
    with Monitor(monitored_dict(sims, influxd.url, journal), tmp_path):
        wait_for(lambda: not backlog[0].exists(), 60, "the journal to drain")
        measurement = first.split(",")[0]
        stamp = int(first.rsplit(" ", 1)[1])
        rows = influxd.query(f'SELECT * FROM "{measurement}" WHERE time = {stamp}', DB)
        assert rows and rows[0]["values"]
    assert "cannot reach" in down.log.read_text()


def test_a_monitoring_section_with_errors_names_the_key(sims: Sims) -> None:
    data = ioc_data(sims, 200.0)
    data["monitoring"] = {"database": {"url": "http://x:8086", "api": "v2", "org": "lab"}}
    with pytest.raises(ConfigError, match=r"monitoring\.database.*org, bucket"):
        load_stand(data)
    data["monitoring"] = {"database": {"url": "x:8086", "db": "a"}, "pvs": {"X": {"deadband": -1}}}
    with pytest.raises(ConfigError) as error:
        load_stand(data)
    assert "monitoring.database.url" in str(error.value)
    assert "monitoring.pvs.X.deadband" in str(error.value)


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 KiB tmpfs, without root."""
    with small_tmpfs(tmp_path / "tiny", "16k") as folder:
        yield folder


@pytest.mark.parametrize("limit", ["bound", "disk full"])
def test_a_full_journal_holds_points_in_memory_until_the_database_answers(
    influxd: Influxd, tmp_path: Path, limit: str, request: pytest.FixtureRequest
) -> None:
    """A journal at its size bound or on a full disk: batches wait in memory, in order, a clear
    error is logged, and every point arrives when the database answers."""
    closed = DatabaseConfig(url=f"http://127.0.0.1:{free_port()}", db=DB, timeout=1.0)
    if limit == "bound":
        journal = Journal(tmp_path / "journal", max_bytes=300)
        points_count, expected, batch = 40, "is full", 5
    else:
        journal = Journal(request.getfixturevalue("full_disk") / "journal", max_bytes=10**9)
        points_count, expected, batch = 2000, "the disk is full", 50
    shipper = Shipper(Database(closed), journal, batch_size=batch)
    base = time.time_ns()
    measurement = limit.replace(" ", "_")
    points = [f"{measurement},stand=t value={i}i {base + i}" for i in range(points_count)]
    half = points_count // 2

    async def down() -> None:
        for point in points[:half]:
            shipper.add(point)
        await shipper.flush()
        for point in points[half:]:
            shipper.add(point)
        await shipper.flush()
        await shipper.database.close()

    asyncio.run(down())
    assert journal.backlog().points > 0 and shipper.held  # the journal took no more
    assert expected in shipper.counters.journal_error
    assert shipper.backlog_points == points_count
    shipper.database = Database(
        DatabaseConfig(url=influxd.url, db=DB, user=USER, password=PASSWORD)
    )

    async def up() -> None:
        await shipper.flush()
        await shipper.database.close()

    asyncio.run(up())
    assert shipper.backlog_points == 0
    query = f"SELECT value FROM {measurement} WHERE time >= {base}"
    rows = influxd.query(query, DB)[0]["values"]
    assert [row[1] for row in rows] == list(range(points_count))


@pytest.fixture(scope="module")
def run_uid(monitor: Monitor) -> str:
    """A real RunEngine run with the profile's callback subscribed (and a verdict published)."""
    RE = RunEngine(call_returns_result=True)
    config = load_stand(monitor.file)
    assert config.monitoring is not None
    events = RunEvents(config, config.monitoring, period=0.1)
    token = RE.subscribe(events)
    try:
        (uid,) = RE(count([], md={"stage": "INITIAL_WARM", "test": "IV"})).run_start_uids
        events.verdict(uid, {"verdict": "pass"})
    finally:
        RE.unsubscribe(token)
        events.close()
    return str(uid)


def test_run_starts_and_stops_arrive_as_events(influxd: Influxd, run_uid: str) -> None:
    uid = run_uid
    rows = influxd.query(
        f"SELECT title, stage, exit_status, verdict FROM events WHERE kind='run' AND uid='{uid}'",
        DB,
    )[0]["values"]
    assert [row[1] for row in rows] == [
        "run start: count",
        "run stop: count (success)",
        "verdict: pass",
    ]
    assert rows[0][2] == "INITIAL_WARM" and rows[1][3] == "success" and rows[2][4] == "pass"


def panel_queries(stand_file: Path, directory: Path) -> list[tuple[str, str]]:
    """(dashboard file, query) of every panel and annotation of the generated dashboards."""
    subprocess.run(
        [TESTSTAND, "monitor", "dashboards", str(stand_file), "-o", str(directory)], check=True
    )
    found = []
    for path in sorted(directory.glob("*.json")):
        dashboard = json.loads(path.read_text())
        queries = [t["query"] for p in dashboard["panels"] for t in p["targets"]]
        queries += [a["query"] for a in dashboard["annotations"]["list"]]
        found += [(path.name, query) for query in queries]
    return found


def assert_series(influxd: Influxd, queries: list[tuple[str, str]]) -> None:
    """Each query, as Grafana would send it for the last hour, returns at least one series."""
    concrete = [
        q.replace("$timeFilter", "time > now() - 1h").replace("$__interval", "10s")
        for _, q in queries
    ]
    results = influxd.query_all(";".join(concrete), DB)
    for (name, query), result in zip(queries, results, strict=True):
        assert "error" not in result and result.get("series"), f"{name}: {query}"


def test_every_dashboard_panel_query_returns_its_series(
    influxd: Influxd, monitor: Monitor, run_uid: str, tmp_path: Path
) -> None:
    """The generated dashboards (one slot panel per slot) queried against the filled database;
    the stand-state panel (the IOC's watchdog, which this IOC runs without) is checked in
    `test_state_transitions_and_interlock_actions_arrive_as_events`."""
    queries = panel_queries(monitor.file, tmp_path)
    config = load_stand(monitor.file)
    overview = json.loads((tmp_path / "overview.json").read_text())
    titles = [panel["title"] for panel in overview["panels"]]
    assert sum(title.endswith("Bias and leakage") for title in titles) == len(config.slots)
    others = [(name, q) for name, q in queries if 'FROM "stand"' not in q]
    assert len(others) > 50 and len(queries) - len(others) >= 1
    assert_series(influxd, others)


def test_the_v2_api_writes_to_victoria_metrics(ioc: Ioc, sims: Sims, tmp_path: Path) -> None:
    """Debian's VictoriaMetrics takes line protocol on `/api/v2/write`: the v2 path end to end."""
    victoria = VictoriaMetrics()
    try:
        database = {"api": "v2", "org": "lab", "bucket": "stand", "token": "t0ken", "db": None}
        data = monitored_dict(sims, victoria.url, tmp_path / "journal", **database)
        del data["monitoring"]["database"]["user"], data["monitoring"]["database"]["password"]
        with Monitor(data, tmp_path) as started:
            series = wait_for(
                lambda: victoria.export('{__name__="slot_bias_V",slot="1"}'), 60, "slot 1 bias"
            )
        assert series[0]["metric"]["module_id"]
        assert started.backlog() == 0
    finally:
        victoria.close()


@pytest.mark.timeout(300)  # its own simulators and IOC start on a loaded machine
def test_state_transitions_and_interlock_actions_arrive_as_events(
    influxd: Influxd, tmp_path: Path, ca_repeater: None
) -> None:
    """An IOC with its watchdog (own simulators): its transitions are `state` events, the E-stop
    sending it to SAFE an `interlock` event, and STATE a field of `stand`."""
    sims = Sims(stand_dict(200.0))
    try:
        ioc = Ioc(ioc_data(sims, 200.0), "TSW:", watchdog=True)
        try:
            data = monitored_dict(sims, influxd.url, tmp_path / "j")
            with Monitor(data, tmp_path, "TSW:") as started:
                wait_for(lambda: last(influxd, "state", "stand"), 150, "the stand's state")
                write("TSW:ESTOP", [1], notify=True, timeout=10, repeater=False)
                where = "WHERE kind='interlock' AND time > now() - 5m"
                title = wait_for(lambda: last(influxd, "title", "events", where), 30, "the event")
                assert title == "state SAFE"
                wait_for(lambda: last(influxd, "state", "stand") == "SAFE", 30, "SAFE")
                assert influxd.query("SELECT * FROM events WHERE kind='state'", DB)
                # the stand-state panel of the overview, over this watchdog's transitions
                panels = tmp_path / "dashboards"
                state = [
                    (n, q) for n, q in panel_queries(started.file, panels) if 'FROM "stand"' in q
                ]
                assert state
                assert_series(influxd, state)
        finally:
            ioc.close()
    finally:
        sims.stop()
