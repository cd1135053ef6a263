"""The Operator and `teststand queue` against a real Redis and a real RE Manager running THIS
profile on the simulated stand, whose instruments a `teststand sim serve-stand --tcp` process
serves (so that the worker and this test process open the same instruments)."""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bluesky import RunEngine
from ophyd_async.core import NotConnectedError
from queue_helpers import PROFILE, SHORT_IV, Manager

from teststand.app.cli import main
from teststand.app.operator import (
    EnvironmentClosed,
    EnvironmentOpenFailed,
    ItemNotFound,
    LockError,
    Operator,
    RequestRefused,
    StatusUpdate,
)
from teststand.app.profile import typed_errors
from teststand.app.qserver import (
    Component,
    QserverOptions,
    RedisUnreachable,
    free_port,
    start,
    start_redis,
    stop,
    stop_component,
)
from teststand.errors import InstrumentBusy
from teststand.stand import build


@pytest.fixture
def operator(manager: Manager) -> Iterator[Operator]:
    with manager.operator() as op:
        yield op
        with contextlib.suppress(Exception):
            op.unlock()
        op.clear()


def test_a_stand_file_with_errors_fails_the_environment_open(
    manager: Manager, operator: Operator
) -> None:
    good = manager.stand.read_text()
    manager.stand.write_text(good + "unknown_section: 1\n")
    try:
        with pytest.raises(EnvironmentOpenFailed, match="unknown_section") as failed:
            operator.open_environment()
    finally:
        manager.stand.write_text(good)
    assert failed.value.error_type == "ConfigError"
    assert "10_stand.py" in str(failed.value)
    status = operator.status()
    assert not status.environment_open and status.manager_state == "idle"


def test_an_iv_scan_through_the_queue_is_read_back_from_tiled(operator: Operator) -> None:
    operator.open_environment()
    assert operator.status().environment_open
    uid = operator.submit("iv_scan", **{**SHORT_IV, "settle": 1.5})
    updates, now = [], []
    for update in operator.follow(uid, timeout=60):
        updates.append(update)
        if "settling" in update.progress and not now:  # the worker's point, voltage and wait
            now = [line for line in operator.status().lines() if line.startswith("  now: ")]
    assert {"running"} <= {u.state for u in updates}
    shown = [u.describe() for u in updates if u.progress]
    assert any(
        re.search(r"running, .*: iv_scan · point \d/3 · \d+ V · settling 1.5 s", line)
        for line in shown
    ), shown
    assert now and re.fullmatch(
        r"  now: iv_scan · point \d/3 · \d+ V · settling \d s left", now[0]
    ), now
    last = updates[-1]
    assert last.finished and last.succeeded, last
    assert last.exit_status == "completed" and len(last.run_uids) == 1
    assert operator.status().manager_state == "idle"

    (run,) = operator.results(uid, wait=120)  # a loaded machine stores slowly
    assert run.uid == last.run_uids[0]
    assert (run.test, run.stage, run.exit_status) == ("iv", "TEST", "success")
    assert run.module_ids == ("20UPGM22110001", "20UPGM22110002")
    assert list(run.table()["iv_voltage"]) == [0.0, 10.0, 20.0]
    # The live analysis of the worker, stored with the run: 20 V is below the operating voltage.
    assert run.analysis is not None and set(run.analysis["slots"]) == {"1", "2"}
    assert run.verdict == "fail"
    assert "operating voltage" in " ".join(run.analysis["slots"]["1"]["reasons"])
    assert operator.results(run.uid)[0].uid == run.uid  # by run uid too


def test_the_worker_holds_the_instruments(
    manager: Manager, operator: Operator, RE: RunEngine
) -> None:
    operator.open_environment()
    with pytest.raises(NotConnectedError) as failed:
        build(manager.stand)
    busy = typed_errors(failed.value)
    assert {getattr(error, "instrument", None) for error in busy} == {
        "hv",
        "chiller",
        "coldbox",
        "smu",
        "lv1",
        "lv2",
    }
    assert all(isinstance(error, InstrumentBusy) for error in busy)
    assert "already in use by another process" in str(busy[0])
    assert "start-re-manager" in str(busy[0])  # who holds it
    # An IPython session on the same stand stops at the stand, saying who holds it.
    ipython = [sys.executable, "-m", "IPython", f"--profile-dir={PROFILE}", "--colors=nocolor"]
    session = subprocess.run(
        [*ipython, "--HistoryManager.hist_file=:memory:", "-c", "print('stand' in dir())"],
        capture_output=True,
        text=True,
        env={**os.environ, "TESTSTAND_STAND": str(manager.stand)},
        cwd=manager.state_dir,
        timeout=120,
    )
    assert "ProfileLoadError: InstrumentBusy" in session.stdout + session.stderr
    assert "start-re-manager" in session.stdout + session.stderr
    assert session.stdout.strip().endswith("False")
    assert operator.status().environment_open  # the worker is unaffected


def test_a_bad_plan_argument_fails_the_item_with_the_plans_message(operator: Operator) -> None:
    operator.open_environment()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"slots": 9, "stop": 20}, r"unknown slot\(s\) \[9\]"),
        ({"slots": "1-2", "stop": 900}, "slot 1: 900.* V is above its 250 V limit"),
    ]
    for arguments, message in cases:
        uid = operator.submit("iv_scan", **arguments)
        last = operator.wait(uid, timeout=60)
        assert last.exit_status == "failed" and last.error_type == "PlanArgumentError"
        assert last.removed and not last.requeued and last.run_uids == ()
        assert "its arguments were refused: taken off the queue" in last.describe()
        assert re.search(message, last.message), last.message
        assert operator.results(uid) == []
        assert operator.status().queue == ()  # not re-queued
    uid = operator.submit_qualification("1-2", "INITIAL_COLD", cycles=0)
    last = operator.wait(uid, timeout=60)
    assert (last.name, last.exit_status, last.error_type) == (
        "module_qualification",
        "failed",
        "PlanArgumentError",
    )
    assert "a qualification starts at a warm stage" in last.message


def test_refused_requests_change_nothing(manager: Manager, operator: Operator) -> None:
    before = operator.status()
    with pytest.raises(RequestRefused, match="'mv' is not in the list of allowed plans") as mv:
        operator.submit("mv", "hv", 3, start=False)
    assert "may queue: bias_scan_with_detector, hv_off, hv_ramp, iv_scan" in str(mv.value)
    with pytest.raises(RequestRefused, match="unexpected keyword argument 'bogus'"):
        operator.submit("iv_scan", slots=1, bogus=3, start=False)
    with pytest.raises(RequestRefused, match="stop"):
        operator.submit("iv_scan", slots=1, stop="high", start=False)
    with (
        manager.operator(user_group="observer") as observer,
        pytest.raises(RequestRefused, match="may queue: none"),
    ):
        observer.submit("iv_scan", slots=1, start=False)
    with pytest.raises(ItemNotFound, match="no item nothing-like-this"):
        next(operator.follow("nothing-like-this"))
    after = operator.status()
    assert (after.queue, after.history) == (before.queue, before.history)


def test_the_lock_keeps_the_queue_to_its_holder(manager: Manager, operator: Operator) -> None:
    operator.open_environment()
    operator.lock("stand-key", note="qualification of batch 7")
    with manager.operator() as other:
        with pytest.raises(LockError, match=r"locked .*no lock key"):
            other.submit("iv_scan", start=False, **SHORT_IV)
        with pytest.raises(LockError):
            other.close_environment()
        other.lock_key = "wrong"
        with pytest.raises(LockError, match="a wrong lock key"):
            other.clear()
        with pytest.raises(LockError):
            other.unlock()
        assert other.status().locked == ("environment", "queue")
        assert "qualification of batch 7" in other.status().lock_holder
    assert operator.status().queue == ()  # nothing changed
    uid = operator.submit("iv_scan", start=False, **SHORT_IV)  # the holder may
    assert [item.uid for item in operator.status().queue] == [uid]
    operator.unlock()
    assert operator.status().locked == ()
    with pytest.raises(LockError, match="give the lock key"):
        operator.unlock()


def test_pause_resume_and_abort(operator: Operator) -> None:
    operator.open_environment()
    uid = operator.submit("iv_scan", slots="1-2", stop=200, step=5, settle=0.05)
    follow = operator.follow(uid, timeout=120)
    seen: list[StatusUpdate] = []

    def until(state: str, point: int = 0) -> StatusUpdate:
        for update in follow:
            seen.append(update)
            running = state != "running" or update.runs_open
            at = re.search(r"point (\d+)/", update.progress)
            far = int(at[1]) >= point if at else not point
            if update.state == state and running and far:
                return update
        raise AssertionError(f"no {state} update: {seen}")

    until("running")  # with its run open
    operator.pause(immediate=True)
    assert until("paused").runs_open == 1, seen
    operator.resume()
    until("running", point=4)  # points measured since the run opened: the run holds data
    aborted = operator.abort()
    assert aborted is not None and aborted.uid == uid
    last = until("finished")
    assert last.exit_status == "aborted" and not last.requeued, seen
    assert operator.status().queue == ()  # the aborted scan is not back at the front
    (run,) = operator.results(uid)
    assert run.exit_status == "abort"
    assert run.table()["iv_voltage"].max() < 200


def test_the_queue_command_line(manager: Manager, operator: Operator) -> None:
    code, output = manager.cli("open")
    assert code == 0 and "environment open" in output
    code, output = manager.cli(
        "add",
        "iv_scan",
        "--slots",
        "1-2",
        "--param",
        "stop=20",
        "--param",
        "step=10",
        "--param",
        "settle=0",
    )
    assert code == 0 and output.startswith("queued iv_scan as "), output
    uid = output.split()[3]
    code, output = manager.cli("watch", uid[:8])  # the short uid the commands print
    assert code == 0 and f"iv_scan {uid[:8]}: completed, 1 run(s)" in output
    code, output = manager.cli("results", uid[:8])
    assert code == 0 and "iv TEST  exit success  verdict fail" in output
    assert "  slot 1 20UPGM22110001: fail: " in output and "operating voltage" in output
    code, output = manager.cli("status")
    assert (
        code == 0 and f"completed iv_scan(slots='1-2', stop=20, step=10, settle=0)  {uid}" in output
    )
    code, output = manager.cli("watch")
    assert code == 0 and "nothing runs (manager idle, 0 queued)" in output
    code, output = manager.cli(
        "add", "module_qualification", "--slots", "1-8", "--stage", "INITIAL_WARM", "--no-start"
    )
    assert code == 0 and "queued module_qualification as" in output
    (queued,) = operator.status().queue
    assert queued.call() == "module_qualification(slots='1-8', stage='INITIAL_WARM')"
    manager.cli("clear")

    code, output = manager.cli("add", "iv_scan", "--slots", "9", "--watch")
    assert code == 1 and "failed, 0 run(s): PlanArgumentError: unknown slot(s) [9]" in output
    assert operator.status().queue == ()
    code, output = manager.cli("add", "mv", "--param", "bad")
    assert code == 1 and "error: --param 'bad': give KEY=VALUE" in output
    code, output = manager.cli("add", "mv")
    assert code == 1 and "error: cannot queue mv:" in output and "Traceback" not in output

    code, output = manager.cli("lock", "k1")
    assert code == 0
    code, output = manager.cli("clear")
    assert code == 1 and "error: cannot clear the queue: the RE Manager is locked" in output
    code, output = manager.cli("unlock", "k1")
    assert code == 0

    code, output = manager.cli("close")
    assert code == 0 and not operator.status().environment_open
    # The closed worker has let go of the instruments: the environment opens again at once.
    operator.open_environment()
    operator.close_environment()
    with pytest.raises(EnvironmentClosed, match="open it first"):
        operator.submit("iv_scan", **SHORT_IV)
    assert operator.status().queue == ()


def test_redis_not_reachable_is_said_clearly(
    tmp_path: Path, served_stand: Path, redis_server: Component
) -> None:
    redis = start_redis(tmp_path / "redis")
    state_dir = tmp_path / "state"
    options = QserverOptions(
        profile=PROFILE,
        stand=served_stand,
        state_dir=state_dir,
        redis=redis.address,
        control_port=free_port(),
        info_port=free_port(),
    )
    start(options)
    try:
        with Operator.from_state_dir(state_dir) as operator:
            operator.submit("iv_scan", start=False, **SHORT_IV)
            stop_component(redis)
            with pytest.raises(RedisUnreachable, match=f"Redis at {redis.address} is not"):
                operator.submit("iv_scan", start=False, **SHORT_IV)
        with pytest.raises(RedisUnreachable, match="Restart the queue server"):
            Operator.from_state_dir(state_dir)
        output = io.StringIO()
        with contextlib.redirect_stderr(output):
            argv = ["queue", "status", "--stand", str(served_stand), "--state-dir", str(state_dir)]
            assert main(argv) == 1
        assert output.getvalue().startswith(f"error: the queue server's Redis at {redis.address}")
        assert "Traceback" not in output.getvalue()
    finally:
        stop(state_dir, force=True)
        stop_component(redis)


def test_a_refused_item_does_not_hold_up_the_queue(manager: Manager, operator: Operator) -> None:
    """900 V is refused when the item runs: it stops the queue once, says why, and is taken off;
    the item queued behind it then runs."""
    operator.open_environment()
    code, output = manager.cli(
        "add", "iv_scan", "--slots", "1-2", "--param", "stop=900", "--no-start"
    )
    assert code == 0, output
    code, output = manager.cli(
        "add",
        "iv_scan",
        *("--slots", "1-2", "--param", "stop=20", "--param", "step=10"),
        "--param",
        "settle=0",
        "--watch",
    )
    assert code == 1, output
    assert "but the queue stopped: iv_scan" in output and "failed" in output, output
    assert "above its 250 V limit" in output and "taken off the queue" in output, output
    (waiting,) = operator.status().queue  # only the valid item is left
    assert waiting.kwargs["stop"] == 20
    code, output = manager.cli("start")
    assert code == 0 and "queue started" in output
    assert operator.wait(waiting.uid, timeout=120).exit_status == "completed"

    uid = operator.submit("iv_scan", slots="1-2", stop=200, step=5, settle=0.05)
    for update in operator.follow(uid, timeout=120):
        if update.state == "running" and update.runs_open:
            break
    code, output = manager.cli("abort")
    assert (
        code == 0
        and f"aborted iv_scan(slots='1-2', stop=200, step=5, settle=0.05)  {uid}" in output
    )
    assert "taken off the queue" in output and operator.status().queue == ()
    operator.submit("hv_off", slots="1-2", start=False)
    operator.submit("hv_off", slots="1", start=False)
    code, output = manager.cli("clear")
    assert code == 0 and "queue cleared: 2 item(s) removed" in output
    assert "removed hv_off(slots='1')" in output
