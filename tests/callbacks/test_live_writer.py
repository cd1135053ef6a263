"""The live writer against a real Tiled server: read-back, visibility, a killed server."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import pytest
from bluesky import RunEngine
from bluesky.utils import RunEngineInterrupted
from lossy_proxy import LossyProxy
from ophyd_async.core import StandardReadable, StandardReadableFormat, init_devices, soft_signal_rw
from tiled.client import from_uri

from teststand.callbacks.tiled_writer import LiveTiledWriter
from teststand.storage.embedded import EmbeddedServer
from teststand.storage.errors import TiledUnreachable
from teststand.storage.replay import replay_directory
from teststand.storage.runwriter import rows_against_stop


class Box(StandardReadable):
    """Soft signals standing in for an instrument."""

    def __init__(self, name: str = "") -> None:
        with self.add_children_as_readables(StandardReadableFormat.HINTED_SIGNAL):
            self.volts = soft_signal_rw(float, 0.0, units="V")
            self.amps = soft_signal_rw(float, 0.0, units="A")
        super().__init__(name=name)


@pytest.fixture
def engine() -> tuple[RunEngine, Box]:
    engine = RunEngine(call_returns_result=False)
    with init_devices():
        box = Box()
    return engine, box


def down_until_set(
    tiled_server: Any, error: Exception
) -> tuple[Callable[[], Any], threading.Event]:
    """A writer's source that raises `error` (Tiled is down) until the event is set."""
    back = threading.Event()

    def source() -> Any:
        if not back.is_set():
            raise error
        return tiled_server.client()

    return source, back


def ramp(
    box: Box,
    points: int,
    pause_after: int = -1,
    pause: float = 0.0,
    until: Callable[[], bool] = lambda: False,
) -> Generator[Any]:
    """A run of `points` events with distinct values; optionally pauses mid-run for `pause` s
    or until `until()` says so."""

    @bpp.run_decorator(md={"module_id": "M-1", "test": "iv"})
    def inner() -> Generator[Any]:
        for i in range(points):
            yield from bps.mv(box.volts, float(i), box.amps, i * 1e-6)
            yield from bps.trigger_and_read([box])
            if i == pause_after:
                deadline = time.monotonic() + pause
                while time.monotonic() < deadline and not until():
                    yield from bps.sleep(0.05)

    return (yield from inner())


def test_run_reads_back_as_bluesky_run(engine: Any, tiled_server: Any, tmp_path: Path) -> None:
    RE, box = engine
    docs: list[tuple[str, dict[str, Any]]] = []
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    with LiveTiledWriter(tiled_server.client, tmp_path / "journal") as writer:
        RE.subscribe(writer)
        (uid,) = RE(ramp(box, 12))
        assert writer.wait(30)
    events = [doc for name, doc in docs if name == "event"]
    client = from_uri(tiled_server.url, api_key=tiled_server.api_key)  # plain tiled.client
    run = client[uid]
    assert "BlueskyRun" in {spec.name for spec in run.specs}
    assert run.metadata["start"]["module_id"] == "M-1"
    assert run.metadata["stop"]["exit_status"] == "success"
    data = run["primary"].read()
    assert list(data["box-volts"].values) == [e["data"]["box-volts"] for e in events]
    assert list(data["box-amps"].values) == [e["data"]["box-amps"] for e in events]
    assert list(tmp_path.joinpath("journal").iterdir()) == []  # verified, so deleted


def test_events_are_visible_while_the_run_goes_on(
    engine: Any, tiled_server: Any, tmp_path: Path
) -> None:
    RE, box = engine
    starts: list[str] = []
    seen: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        client = from_uri(tiled_server.url, api_key=tiled_server.api_key)
        while not stop.is_set() and not seen:
            if starts and starts[0] in client:
                run = client[starts[0]]
                if "primary" in run and not run.metadata.get("stop"):
                    try:
                        rows = len(run["primary"].base["internal"].read())
                    except KeyError:  # the stream is there, its event table not yet
                        rows = 0
                    if rows >= 5:
                        seen.append(rows)
            stop.wait(0.1)

    with LiveTiledWriter(tiled_server.client, tmp_path / "journal") as writer:
        RE.subscribe(writer)
        RE.subscribe(lambda name, doc: starts.append(doc["uid"]) if name == "start" else None)
        watcher = threading.Thread(target=watch)
        watcher.start()
        # the run holds after its fifth event until the watcher has seen them (or 60 s)
        RE(ramp(box, 6, pause_after=4, pause=60.0, until=lambda: bool(seen)))
        stop.set()
        watcher.join()
    assert seen, "the first five events were not visible while the run held for 60 s"


def test_killed_server_then_replay_stores_every_event_once(engine: Any, tmp_path: Path) -> None:
    RE, box = engine
    data = tmp_path / "tiled"
    server = EmbeddedServer(data)
    server.wait_ready(180)
    url, key = server.url, server.api_key
    killed = threading.Event()

    def kill_mid_run(name: str, doc: dict[str, Any]) -> None:
        if name == "event" and doc["seq_num"] == 5 and not killed.is_set():
            os.kill(server.pid, signal.SIGKILL)  # Tiled dies mid-run
            killed.set()

    writer = LiveTiledWriter(server.client, tmp_path / "journal", replay_interval=3600)
    RE.subscribe(writer)
    RE.subscribe(kill_mid_run)
    started = time.monotonic()
    (uid,) = RE(ramp(box, 20))
    assert time.monotonic() - started < 5, "the run was blocked by the dead server"
    server.close()
    restarted = EmbeddedServer(data)  # same data directory, same port
    try:
        assert restarted.wait_ready(180) == url
        writer.wait(120)
        writer.close()
        client = from_uri(url, api_key=key)
        replay_directory(client, tmp_path / "journal")
        assert list((tmp_path / "journal").iterdir()) == []
        table = client[uid]["primary"].base["internal"].read()
        assert sorted(table["seq_num"]) == list(range(1, 21))
        assert sorted(table["box-volts"]) == [float(i) for i in range(20)]
    finally:
        restarted.close()


def test_embedded_default_does_not_hold_up_the_first_run(engine: Any, tmp_path: Path) -> None:
    from teststand.callbacks.tiled_writer import storage_writer
    from teststand.storage.config import StorageConfig

    RE, box = engine
    config = StorageConfig(data_dir=tmp_path / "stand", min_free_mb=0)
    started = time.monotonic()
    writer = storage_writer(config, replay_interval=0.5)
    RE.subscribe(writer)
    (uid,) = RE(ramp(box, 3))
    assert time.monotonic() - started < 2, "the run waited for the embedded server"
    try:
        assert writer.wait(60)
        state = (tmp_path / "stand" / "server.json").read_text()
        key = (tmp_path / "stand" / "api_key").read_text().strip()
        client = from_uri(json.loads(state)["url"], api_key=key)
        assert len(client[uid]["primary"].read()["box-volts"]) == 3
        assert list((tmp_path / "stand" / "journal").iterdir()) == []
    finally:
        writer.close()


def test_annotation_is_stored_with_the_run(engine: Any, tiled_server: Any, tmp_path: Path) -> None:
    RE, box = engine
    journal = tmp_path / "journal"
    with LiveTiledWriter(tiled_server.client, journal) as writer:
        RE.subscribe(writer)
        # published on the stop document, before the writer has stored the run
        RE.subscribe(
            lambda name, doc: (
                writer.annotate(doc["run_start"], {"verdict": "fail"}) if name == "stop" else None
            )
        )
        (uid,) = RE(ramp(box, 3))
        writer.annotate(uid, {"analysis": {"failed": ["M-1"]}})  # after it is stored
        assert writer.wait(30)
    run = from_uri(tiled_server.url, api_key=tiled_server.api_key)[uid]
    assert run.metadata["verdict"] == "fail"
    assert run.metadata["analysis"] == {"failed": ["M-1"]}
    assert run.metadata["start"]["module_id"] == "M-1"
    assert list(journal.iterdir()) == []


def test_annotation_waits_on_disk_while_tiled_is_down(
    engine: Any, tiled_server: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    RE, box = engine
    journal = tmp_path / "journal"

    unreachable, _ = down_until_set(tiled_server, ConnectionError("Tiled is down"))
    with LiveTiledWriter(unreachable, journal, replay_interval=3600) as writer:
        RE.subscribe(writer)
        with caplog.at_level(logging.WARNING, logger="teststand.callbacks.tiled_writer"):
            (uid,) = RE(ramp(box, 2))
            writer.annotate(uid, {"verdict": "pass"})
            assert writer.wait(30)
    # one warning for the run, at its first failure, naming it and where it goes on
    assert [
        r.getMessage() for r in caplog.records if "goes on in the journal" in r.getMessage()
    ] == [
        f"run {uid}: cannot reach Tiled (ConnectionError: Tiled is down); it goes on in the "
        f"journal {journal} and is replayed when Tiled answers"
    ]
    assert sorted(p.name for p in journal.iterdir()) == [
        f"{uid}.annotation.json",
        f"{uid}.jsonl",
    ]
    replay_directory(tiled_server.client(), journal)
    run = from_uri(tiled_server.url, api_key=tiled_server.api_key)[uid]
    assert run.metadata["verdict"] == "pass"
    assert list(journal.iterdir()) == []


def test_a_run_rewound_by_a_pause_is_stored_and_verified(
    engine: Any, tiled_server: Any, tmp_path: Path
) -> None:
    RE, box = engine
    events: list[dict[str, Any]] = []

    def pause_at_third_event(name: str, doc: dict[str, Any]) -> None:
        if name == "event":
            events.append(doc)
            if len(events) == 3:
                threading.Thread(target=RE.request_pause).start()

    @bpp.run_decorator()
    def steps() -> Generator[Any]:
        for i in range(5):
            yield from bps.checkpoint()
            yield from bps.mv(box.volts, float(i))
            yield from bps.trigger_and_read([box])
            # the pause, asked for at the third event, lands in this sleep however loaded the
            # machine is: the rewind then replays the third point
            yield from bps.sleep(3.0 if i == 2 else 0.01)

    journal = tmp_path / "journal"
    with LiveTiledWriter(tiled_server.client, journal) as writer:
        RE.subscribe(writer)
        RE.subscribe(pause_at_third_event)
        with pytest.raises(RunEngineInterrupted):
            RE(steps())
        (uid,) = RE.resume()
        assert writer.wait(30)
    seq = [e["seq_num"] for e in events]
    assert len(seq) > len(set(seq))  # the rewind replayed a point under its seq_num
    run = from_uri(tiled_server.url, api_key=tiled_server.api_key)[uid]
    assert list(run["primary"].read()["box-volts"].values) == [
        e["data"]["box-volts"] for e in events
    ]
    assert list(journal.iterdir()) == []  # verified: the repeated seq_num is no double write
    # the stop document counts the replayed point once (the RunEngine's counter rewinds too)
    table = run["primary"].base["internal"].read(columns=["seq_num", "time"])
    rows = list(zip(table["seq_num"], table["time"], strict=True))
    counted = run.metadata["stop"]["num_events"]["primary"]
    assert len(rows) == len(events) > counted == max(seq)
    assert rows_against_stop(rows, counted) == ""
    assert "twice" in rows_against_stop([*rows, rows[0]], counted)
    assert "missing" in rows_against_stop([row for row in rows if row[0] != 1], counted)
    # rewound and not taken again (the run failed while suspended): right after the count
    assert rows_against_stop([*rows, (counted + 1, 0.5)], counted) == ""
    assert "gap" in rows_against_stop([*rows, (counted + 2, 0.5)], counted)


def test_the_writer_reconnects_for_the_next_run_after_tiled_failed_one(
    engine: Any, tiled_server: Any, tmp_path: Path
) -> None:
    RE, box = engine
    journal = tmp_path / "journal"
    source, back = down_until_set(tiled_server, ConnectionError("Tiled is down"))

    with LiveTiledWriter(source, journal, replay_interval=3600) as writer:
        RE.subscribe(writer)
        (failed,) = RE(ramp(box, 2))
        assert writer.wait(30)
        back.set()  # Tiled is back: the next run is stored live, without waiting for a replay
        (stored,) = RE(ramp(box, 3))
        assert writer.wait(30)
    assert [path.name for path in journal.iterdir()] == [f"{failed}.jsonl"]
    table = tiled_server.client()[stored]["primary"].base["internal"].read()
    assert sorted(table["seq_num"]) == [1, 2, 3]


def test_a_run_that_cannot_be_checked_keeps_its_journal(
    engine: Any, tiled_server: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Tiled stores every row but refuses to read them back: unverified, the journal stays
    RE, box = engine
    journal = tmp_path / "journal"
    with LossyProxy(tiled_server.url, lose_every=0, refuse_table_reads=True) as url:
        writer = LiveTiledWriter(lambda: from_uri(url, api_key=tiled_server.api_key), journal)
        RE.subscribe(writer)
        with caplog.at_level(logging.WARNING, logger="teststand.callbacks.tiled_writer"):
            (uid,) = RE(ramp(box, 4))
            assert writer.wait(60)
        writer.close()
    assert [path.name for path in journal.iterdir()] == [f"{uid}.jsonl"]
    (warned,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"run {uid}")]
    assert warned.startswith(f"run {uid}: cannot verify (ClientError: 403: "), warned
    table = tiled_server.client()[uid]["primary"].base["internal"].read()
    assert sorted(table["seq_num"]) == [1, 2, 3, 4]  # stored all along


def test_the_background_replay_stores_what_tiled_missed_once_per_interval(
    engine: Any, tiled_server: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    RE, box = engine
    journal = tmp_path / "journal"
    source, back = down_until_set(tiled_server, ConnectionError("Tiled is down"))

    warnings = caplog.at_level(logging.WARNING, logger="teststand.callbacks.tiled_writer")
    started = time.monotonic()
    with warnings, LiveTiledWriter(source, journal, replay_interval=2.0) as writer:
        RE.subscribe(writer)
        (uid,) = RE(ramp(box, 3))
        assert writer.wait(30)
        time.sleep(1.0)
        # one try at the start, then one per interval
        tries = [r.getMessage() for r in caplog.records if "replay failed" in r.getMessage()]
        assert 1 <= len(tries) <= 1 + (time.monotonic() - started) / 2.0, len(tries)
        assert set(tries) == {"background replay failed: ConnectionError: Tiled is down"}
        back.set()  # Tiled is back: the next replay stores the run, no one else does
        deadline = time.monotonic() + 30
        while any(journal.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.1)
    assert list(journal.iterdir()) == []
    table = tiled_server.client()[uid]["primary"].base["internal"].read()
    assert sorted(table["seq_num"]) == [1, 2, 3]


def test_tiled_down_at_the_writers_start_and_back_before_the_first_run(
    engine: Any, tiled_server: Any, tmp_path: Path
) -> None:
    # the replay at the start fails with a typed error; the first run still gets a fresh client
    RE, box = engine
    journal = tmp_path / "journal"
    source, back = down_until_set(
        tiled_server, TiledUnreachable("Tiled at http://127.0.0.1:1 does not answer")
    )

    with LiveTiledWriter(source, journal, replay_interval=3600) as writer:
        assert writer.wait(30)
        deadline = time.monotonic() + 30
        while not isinstance(writer.last_error, TiledUnreachable):  # the replay at the start
            assert time.monotonic() < deadline, "no replay at the start"
            time.sleep(0.05)
        back.set()
        RE.subscribe(writer)
        (uid,) = RE(ramp(box, 2))
        assert writer.wait(30)
    assert list(journal.iterdir()) == []  # stored live and verified
    assert uid in tiled_server.client()


def test_an_annotation_made_during_the_run_is_stored_at_its_end(
    engine: Any, tiled_server: Any, tmp_path: Path
) -> None:
    RE, box = engine
    journal = tmp_path / "journal"
    with LiveTiledWriter(tiled_server.client, journal) as writer:

        def annotate_at_the_second_event(name: str, doc: dict[str, Any]) -> None:
            if name == "event" and doc["seq_num"] == 2:
                writer.annotate(started[0], {"verdict": "pass"})

        started: list[str] = []
        RE.subscribe(writer)
        RE.subscribe(lambda name, doc: started.append(doc["uid"]) if name == "start" else None)
        RE.subscribe(annotate_at_the_second_event)
        (uid,) = RE(ramp(box, 3))
        assert writer.wait(30)
    assert tiled_server.client()[uid].metadata["verdict"] == "pass"
    assert list(journal.iterdir()) == []  # the annotation file too


def test_rows_against_stop_names_what_is_wrong() -> None:
    rows = [(seq, 100.0 + seq) for seq in range(1, 11)]
    assert rows_against_stop(rows, 10) == ""
    assert rows_against_stop([*rows, rows[0], rows[1]], 10) == "2 row(s) stored twice"
    assert rows_against_stop(rows[6:], 10) == "seq_num [1, 2, 3, 4, 5] missing of 10"
    beyond = [(seq, 200.0 + seq) for seq in range(12, 18)]
    assert rows_against_stop([*rows, *beyond], 10) == (
        "seq_num [12, 13, 14, 15, 16] beyond the stop's 10, with a gap"
    )


def test_rows_lost_by_tiled_keep_the_journal(
    engine: Any, tiled_server: Any, tmp_path: Path
) -> None:
    # Tiled answers OK to every append of rows but loses them: the run must stay journaled
    RE, box = engine
    journal = tmp_path / "journal"
    with LossyProxy(tiled_server.url, lose_every=1) as url:
        writer = LiveTiledWriter(lambda: from_uri(url, api_key=tiled_server.api_key), journal)
        RE.subscribe(writer)
        (uid,) = RE(ramp(box, 6))
        assert writer.wait(60)
        writer.close()
    kept = list(journal.iterdir())
    assert [path.name.startswith(uid) for path in kept] == [True]
    (result,) = replay_directory(tiled_server.client(), journal)
    assert result.outcome == "stored" and list(journal.iterdir()) == []
    table = tiled_server.client()[uid]["primary"].base["internal"].read()
    assert sorted(table["seq_num"]) == list(range(1, 7))
