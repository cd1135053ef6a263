"""Journals and their replay into a real Tiled server: idempotent, corrupt lines, bad servers."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

import bluesky.plans as bp
import numpy as np
import pytest
from bluesky import RunEngine
from lossy_proxy import LossyProxy
from ophyd_async.core import StandardReadable, StandardReadableFormat, init_devices, soft_signal_rw

from teststand.callbacks.journal import SPACE_CHECK_EVERY, RunJournal
from teststand.storage.client import connect
from teststand.storage.errors import (
    JournalError,
    JournalSpaceLow,
    TiledAuthError,
    TiledUnreachable,
)
from teststand.storage.journal import JournalFile, encode, is_live, journals, read_journal
from teststand.storage.replay import recovered_stop, replay_directory
from teststand.storage.runwriter import write_run
from teststand.storage.status import journal_status

TESTSTAND = str(Path(sys.executable).with_name("teststand"))


class Meter(StandardReadable):
    def __init__(self, name: str = "") -> None:
        with self.add_children_as_readables(StandardReadableFormat.HINTED_SIGNAL):
            self.value = soft_signal_rw(float, 2.5, units="V")
        super().__init__(name=name)


def journal_a_run(directory: Path, points: int = 8, **md: Any) -> tuple[str, Path]:
    """Run a plan with only the journal subscribed (Tiled never sees it)."""
    RE = RunEngine(call_returns_result=False)
    with init_devices():
        meter = Meter()
    journal = RunJournal(directory, min_free_bytes=0)
    RE.subscribe(journal.append)
    (uid,) = RE(bp.count([meter], points, md=md))
    closed = journal.detach(uid)
    assert closed is not None
    closed.close()
    return uid, closed.path


def rows(client: Any, uid: str) -> list[int]:
    return sorted(client[uid]["primary"].base["internal"].read()["seq_num"])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_journal_routes_interleaved_runs_to_their_own_files(tmp_path: Path) -> None:
    """Runs open at once (a plan with run keys): each document goes to its run's file, found
    through its descriptor or resource, also after another run has stopped."""
    journal = RunJournal(tmp_path, min_free_bytes=0)
    documents = [
        ("start", {"uid": "A", "time": 1.0}),
        ("descriptor", {"uid": "dA", "run_start": "A", "time": 2.0}),
        ("start", {"uid": "B", "time": 3.0}),
        ("descriptor", {"uid": "dB", "run_start": "B", "time": 4.0}),
        ("resource", {"uid": "rA", "run_start": "A"}),
        ("stream_resource", {"uid": "sA", "run_start": "A"}),
        ("event", {"uid": "eA", "descriptor": "dA", "seq_num": 1, "time": 5.0}),
        ("datum", {"datum_id": "rA/0", "resource": "rA"}),
        ("stream_datum", {"uid": "sA/0", "stream_resource": "sA"}),
        ("stop", {"uid": "zA", "run_start": "A", "time": 6.0}),
        ("start", {"uid": "C", "time": 7.0}),
        ("event", {"uid": "eB", "descriptor": "dB", "seq_num": 1, "time": 8.0}),
        ("stop", {"uid": "zB", "run_start": "B", "time": 9.0}),
        ("stop", {"uid": "zC", "run_start": "C", "time": 10.0}),
    ]
    owners = []
    for name, doc in documents:
        owners.append(journal.append(name, doc))
        if name == "stop":
            detached = journal.detach(owners[-1])
            assert detached is not None
            detached.close()
    assert "".join(owners) == "AABBAAAAAACBBC"
    kept = {
        path.stem: [doc.get("uid", doc.get("datum_id")) for _, doc in read_journal(path).documents]
        for path in tmp_path.glob("*.jsonl")
    }
    assert kept == {
        "A": ["A", "dA", "rA", "sA", "eA", "rA/0", "sA/0", "zA"],
        "B": ["B", "dB", "eB", "zB"],
        "C": ["C", "zC"],
    }
    assert journal.detach("never-started") is None


def test_the_journal_checks_the_disk_again_every_thousand_documents(tmp_path: Path) -> None:
    journal = RunJournal(tmp_path, min_free_bytes=0)
    journal.append("start", {"uid": "A", "time": 1.0})  # checked at the start: enough space
    journal.append("descriptor", {"uid": "dA", "run_start": "A", "time": 1.0})
    journal.min_free_bytes = shutil.disk_usage(tmp_path).free * 10  # the disk fills up
    event = {"descriptor": "dA", "seq_num": 1, "time": 2.0}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3, SPACE_CHECK_EVERY):  # documents 3 to 999
            journal.append("event", event)
        assert caught == []
        journal.append("event", event)  # the 1000th document
    assert [w.category for w in caught] == [JournalSpaceLow]
    assert f"free for the run journal in {tmp_path}" in str(caught[0].message)


def test_a_journal_that_cannot_be_synced_says_so_once_per_try(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal = JournalFile(tmp_path, "A")
    journal.append("start", {"uid": "A", "time": 1.0})
    descriptor = journal._fd  # the OS faults below are put under the journal's own descriptor
    saved, null = os.dup(descriptor), os.open(os.devnull, os.O_WRONLY)
    try:
        with caplog.at_level(logging.ERROR, logger="teststand.storage.journal"):
            os.dup2(null, descriptor)  # a device that cannot fsync (EINVAL): nothing to say
            journal.sync()
            assert caplog.messages == []
            os.close(descriptor)  # a descriptor gone bad (EBADF): an error naming the file
            journal.sync()
        assert caplog.messages == [
            f"cannot fsync the run journal {journal.path}: Bad file descriptor"
        ]
    finally:
        os.dup2(saved, descriptor)
        os.close(saved)
        os.close(null)
    journal.close()
    assert [name for name, _ in read_journal(journal.path).documents] == ["start"]


def test_journal_replayed_twice_stores_nothing_twice(tiled_client: Any, tmp_path: Path) -> None:
    uid, path = journal_a_run(tmp_path / "journal")
    copy = tmp_path / "copy.jsonl"
    shutil.copy(path, copy)
    (first,) = replay_directory(tiled_client, tmp_path / "journal")
    assert (first.outcome, first.run_uid) == ("stored", uid) and not path.exists()
    shutil.copy(copy, path)  # the same journal again (e.g. restored from a backup)
    (second,) = replay_directory(tiled_client, tmp_path / "journal")
    assert second.outcome == "already-stored" and not path.exists()
    assert rows(tiled_client, uid) == list(range(1, 9))
    assert list(tiled_client).count(uid) == 1


def test_a_fork_of_the_test_process_reads_tables(tiled_client: Any, tmp_path: Path) -> None:
    """`make mutate` runs each mutant's tests in a fork of the process that ran them first. A
    table read there must not wait for a thread pool that stayed behind (tests/conftest.py)."""
    uid, _ = journal_a_run(tmp_path / "journal")
    replay_directory(tiled_client, tmp_path / "journal")
    assert rows(tiled_client, uid) == list(range(1, 9))  # dask's pool made before the fork
    child = os.fork()
    if child == 0:  # read again, or be ended by the alarm's default action
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.alarm(30)
        os._exit(0 if rows(tiled_client, uid) == list(range(1, 9)) else 1)
    _, status = os.waitpid(child, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"the fork's read: {status}"


def test_partial_run_in_tiled_is_completed_exactly_once(tiled_client: Any, tmp_path: Path) -> None:
    other, _ = journal_a_run(tmp_path / "other", points=3)
    replay_directory(tiled_client, tmp_path / "other")  # a run stored before, beside it
    uid, path = journal_a_run(tmp_path / "journal")
    contents = read_journal(path)
    write_run(tiled_client, contents.documents[:6])  # as if Tiled died mid-run
    (result,) = replay_directory(tiled_client, tmp_path / "journal")
    assert result.outcome == "stored"
    assert rows(tiled_client, uid) == list(range(1, 9))
    assert rows(tiled_client, other) == [1, 2, 3]  # only the partial run was rewritten


def test_corrupted_line_keeps_good_lines_and_reports_bad(tiled_client: Any, tmp_path: Path) -> None:
    uid, path = journal_a_run(tmp_path / "journal")
    lines = path.read_bytes().splitlines(keepends=True)
    event_lines = [i for i, line in enumerate(lines) if line.startswith(b'["event"')]
    lines[event_lines[3]] = b'["event",{"uid": garbage\n'
    lines.append(b'["event",{"trunc')  # a write cut short by a crash
    path.write_bytes(b"".join(lines))
    (result,) = replay_directory(tiled_client, tmp_path / "journal")
    assert result.outcome == "stored"
    assert [bad.number for bad in result.bad_lines] == [event_lines[3] + 1, len(lines)]
    assert "line" in result.describe() and "unreadable" in result.describe()
    assert rows(tiled_client, uid) == [1, 2, 3, 5, 6, 7, 8]
    (status,) = journal_status(tmp_path / "journal")
    assert status.state == "bad" and status.bad_lines == 2  # kept for a human to look at
    assert [p.name for p in (tmp_path / "journal").iterdir()] == [f"{uid}.jsonl.bad"]
    assert replay_directory(tiled_client, tmp_path / "journal") == []


def test_a_journal_of_unreadable_lines_only_is_kept_for_a_human(
    tiled_client: Any, tmp_path: Path
) -> None:
    journal = tmp_path / "journal"
    journal.mkdir()
    (journal / "cut.jsonl").write_bytes(b'["start",{"uid": garbage\n["event",{"trunc')
    (result,) = replay_directory(tiled_client, journal)
    assert result.outcome == "empty"
    assert [bad.number for bad in result.bad_lines] == [1, 2]
    assert [p.name for p in journal.iterdir()] == ["cut.jsonl.bad"]


def test_a_journal_without_a_readable_start_is_kept_with_its_bad_lines(
    tiled_client: Any, tmp_path: Path
) -> None:
    uid, path = journal_a_run(tmp_path / "journal")
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b'["start",{"uid": garbage\n' + b"".join(lines[1:]))
    (result,) = replay_directory(tiled_client, tmp_path / "journal")
    assert (result.outcome, [bad.number for bad in result.bad_lines]) == ("failed", [1])
    assert result.problem == f"no readable start document; kept as {uid}.jsonl.bad"
    assert [p.name for p in (tmp_path / "journal").iterdir()] == [f"{uid}.jsonl.bad"]
    assert uid not in tiled_client


def test_a_journal_with_a_bad_line_stored_already_is_kept_for_a_human(
    tiled_client: Any, tmp_path: Path
) -> None:
    uid, path = journal_a_run(tmp_path / "journal")
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines) + b'["event",{"trunc')  # a write cut short by a crash
    copy = path.read_bytes()
    (first,) = replay_directory(tiled_client, tmp_path / "journal")
    (tmp_path / "journal" / f"{uid}.jsonl.bad").unlink()  # a human looked at it
    path.write_bytes(copy)  # the same journal again (e.g. restored from a backup)
    (second,) = replay_directory(tiled_client, tmp_path / "journal")
    assert (first.outcome, second.outcome) == ("stored", "already-stored")
    assert (second.run_uid, [bad.number for bad in second.bad_lines]) == (uid, [len(lines) + 1])
    assert [p.name for p in (tmp_path / "journal").iterdir()] == [f"{uid}.jsonl.bad"]


def test_run_without_stop_is_recovered(tiled_client: Any, tmp_path: Path) -> None:
    uid, path = journal_a_run(tmp_path / "journal")
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-1]))  # the process died before the stop document
    documents = read_journal(path).documents
    (result,) = replay_directory(tiled_client, tmp_path / "journal")
    assert result.outcome == "stored"
    stop = tiled_client[uid].metadata["stop"]
    assert stop["exit_status"] == "fail" and stop["run_start"] == uid
    assert stop["reason"] == (
        "teststand: the run ended without a stop document; recovered from its journal"
    )
    assert stop["num_events"] == {"primary": 8}
    assert stop["time"] == max(doc["time"] for _, doc in documents)
    assert str(uuid.UUID(stop["uid"])) == stop["uid"] != uid
    assert rows(tiled_client, uid) == list(range(1, 9))


def test_a_recovered_stop_counts_events_whose_descriptor_was_lost() -> None:
    """Events whose descriptor line was unreadable count under "?"; documents without a time
    (a stream resource) leave the stop's time to the others."""
    documents = [
        ("start", {"uid": "s-1", "time": 1.7e9}),
        ("descriptor", {"uid": "d-1", "name": "primary", "run_start": "s-1", "time": 1.7e9 + 1}),
        ("event", {"descriptor": "d-1", "seq_num": 1, "time": 1.7e9 + 2}),
        ("event", {"descriptor": "d-lost", "seq_num": 1, "time": 1.7e9 + 3.5}),
        ("stream_resource", {"uid": "r-1", "run_start": "s-1"}),
    ]
    stop = recovered_stop(documents)
    assert stop["num_events"] == {"primary": 1, "?": 1}
    assert stop["time"] == 1.7e9 + 3.5
    assert (stop["run_start"], stop["exit_status"]) == ("s-1", "fail")


def test_unreachable_uri_is_a_clear_error_and_keeps_journals(tmp_path: Path) -> None:
    _, path = journal_a_run(tmp_path / "journal")
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(TiledUnreachable, match="no Tiled server answers"):
        connect(url, "key")
    started = time.monotonic()
    done = subprocess.run(
        [TESTSTAND, "storage", "replay", str(tmp_path / "journal"), "--tiled", url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "no Tiled server answers" in done.stderr
    assert time.monotonic() - started < 20
    assert path.exists()


def test_wrong_api_key_is_a_clear_error(tiled_server: Any, tmp_path: Path) -> None:
    with pytest.raises(TiledAuthError, match="refused the API key"):
        connect(tiled_server.url, "wrongkey")
    with pytest.raises(TiledAuthError, match="needs an API key"):
        connect(tiled_server.url)


def test_status_and_replay_commands(tiled_server: Any, tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    uid, _ = journal_a_run(journal)
    status = subprocess.run(
        [TESTSTAND, "storage", "status", str(journal)], capture_output=True, text=True, timeout=60
    )
    assert status.returncode == 0
    assert f"pending  {uid}" in status.stdout and "8 events" in status.stdout
    replay = subprocess.run(
        [TESTSTAND, "storage", "replay", str(journal), "--tiled", tiled_server.url],
        capture_output=True,
        text=True,
        timeout=60,
        env={"TILED_API_KEY": tiled_server.api_key, "PATH": "/usr/bin:/bin"},
    )
    assert replay.returncode == 0, replay.stderr
    assert "stored" in replay.stdout
    assert rows(tiled_server.client(), uid) == list(range(1, 9))


def test_low_disk_space_warns_at_run_start(tmp_path: Path) -> None:
    journal = RunJournal(tmp_path, min_free_bytes=1 << 62)
    with pytest.warns(JournalSpaceLow, match="free for the run journal"):
        journal.append("start", {"uid": "u1", "time": 0.0})


def test_journal_appends_and_background_syncs_never_lose_or_repeat_a_line(tmp_path: Path) -> None:
    # The RunEngine thread appends while the writer's thread syncs the same journal.
    journal = JournalFile(tmp_path, "run-1")
    stop = threading.Event()
    failures: list[BaseException] = []

    def sync_until_stopped() -> None:
        while not stop.is_set():
            try:
                journal.sync()
            except BaseException as exc:  # reported by the assertion below
                failures.append(exc)

    syncer = threading.Thread(target=sync_until_stopped)
    syncer.start()
    for i in range(3000):
        journal.append("event", {"seq_num": i})
    stop.set()
    syncer.join()
    journal.close()
    assert failures == []
    seq = [doc["seq_num"] for _, doc in read_journal(journal.path).documents]
    assert seq == list(range(3000))


def test_rows_lost_by_tiled_keep_the_journal(tiled_server: Any, tmp_path: Path) -> None:
    # Tiled answers OK to the append of the run's rows, but loses them
    uid, path = journal_a_run(tmp_path / "journal", points=8)
    with LossyProxy(tiled_server.url, lose_every=1) as url:
        (result,) = replay_directory(connect(url, tiled_server.api_key), tmp_path / "journal")
    assert result.outcome == "failed" and result.run_uid == uid
    assert "'primary' holds" in result.problem and "expected 8 unique" in result.problem
    assert path.exists()  # kept for the next replay
    (again,) = replay_directory(tiled_server.client(), tmp_path / "journal")
    assert again.outcome == "stored" and not path.exists()
    assert rows(tiled_server.client(), uid) == list(range(1, 9))


def test_journal_lines_hold_numpy_values_and_refuse_other_objects(tmp_path: Path) -> None:
    journal = JournalFile(tmp_path, "run-1")
    journal.append("event", {"data": {"count": np.int64(3), "trace": np.arange(3)}})
    journal.close()
    assert read_journal(journal.path).documents == [
        ("event", {"data": {"count": 3, "trace": [0, 1, 2]}})
    ]
    with pytest.raises(TypeError, match="cannot store object in a journal"):
        encode("event", {"data": object()})


def test_unreadable_and_unwritable_journals_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "run-1.jsonl").mkdir()  # a directory where the journal should go
    with pytest.raises(JournalError) as error:
        JournalFile(tmp_path, "run-1")
    assert str(error.value) == (
        f"cannot create the run journal {tmp_path / 'run-1.jsonl'}: Is a directory; make the "
        "directory writable or set storage.journal_dir to one that is"
    )
    with pytest.raises(JournalError) as error:
        read_journal(tmp_path / "missing.jsonl")
    assert str(error.value) == (
        f"cannot read journal {tmp_path / 'missing.jsonl'}: No such file or directory"
    )


def test_lines_that_are_no_name_document_pair_are_bad(tmp_path: Path) -> None:
    path = tmp_path / "run-1.jsonl"
    lines = ['["start",{"uid":"run-1"}]', "", "[1,{}]", '["stop"]', '["stop",[]]', '{"a":1}']
    path.write_text("\n".join(lines) + "\n")
    contents = read_journal(path)
    assert contents.documents == [("start", {"uid": "run-1"})]
    assert [(bad.number, bad.text, bad.problem) for bad in contents.bad_lines] == [
        (number, lines[number - 1], "not a [name, document] pair") for number in (3, 4, 5, 6)
    ]
    assert contents.run_uid == "run-1" and not contents.has_stop


def test_live_empty_and_startless_journals(tiled_client: Any, tmp_path: Path) -> None:
    """A journal held by its writer is left alone; an empty one is removed; one whose first
    readable document is no start is kept aside as `.jsonl.bad`, listed as such."""
    directory = tmp_path / "journal"
    live = JournalFile(directory, "live")
    live.append("start", {"uid": "live", "time": 1.0})
    (directory / "empty.jsonl").write_text("\n")
    (directory / "headless.jsonl").write_text('["stop",{"uid":"s"}]\n')
    assert is_live(live.path) and not is_live(directory / "empty.jsonl")
    assert not is_live(directory / "missing.jsonl")
    results = {r.path.name: r for r in replay_directory(tiled_client, directory)}
    assert {name: r.outcome for name, r in results.items()} == {
        "live.jsonl": "live",
        "empty.jsonl": "empty",
        "headless.jsonl": "failed",
    }
    assert results["headless.jsonl"].describe() == (
        "headless.jsonl: failed (no readable start document; kept as headless.jsonl.bad)"
    )
    assert [p.name for p in journals(directory)] == ["live.jsonl"]
    assert sorted(p.name for p in journals(directory, include_bad=True)) == [
        "headless.jsonl.bad",
        "live.jsonl",
    ]
    live.close()
    assert not is_live(live.path)
    assert list(journals(tmp_path / "nowhere")) == []
