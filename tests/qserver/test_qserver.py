"""`teststand qserver` against a real Redis, a real RE Manager and a real bluesky-httpserver."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from bluesky_queueserver_api import BPlan
from queue_helpers import wait_until_run

from teststand import errors
from teststand.app.cli import main
from teststand.app.qserver import (
    STATE_FILE,
    AlreadyRunning,
    Component,
    ManagerBusy,
    PortInUse,
    QserverConfigError,
    QserverError,
    QserverOptions,
    RedisAddress,
    RedisUnreachable,
    StartFailed,
    free_port,
    http_api_key,
    http_password,
    manager_client,
    ping_redis,
    read_state,
    start,
    stop,
)
from teststand.config import ConfigError

HTTP_CONFIG = Path(__file__).resolve().parents[2] / "profile_collection" / "httpserver.yml"


def live_children() -> set[int]:
    """This process's children that have not ended."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[1]) == os.getpid():
            found.add(int(stat.parent.name))
    return found


@dataclass
class Running:
    state_dir: Path
    output: str
    redis: Component
    manager: Component
    http: Component
    ports: list[int]

    def client(self) -> Any:
        control, info = self.manager.address.split()
        return manager_client(control, info, timeout=10.0)


@pytest.fixture(scope="module")
def running(
    profile: Path, redis_server: Component, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    """`teststand qserver start --http` with the session's Redis and free ports."""
    state_dir = tmp_path_factory.mktemp("qserver-state")
    ports = [free_port() for _ in range(3)]
    argv = ["qserver", "start", "--profile", str(profile), "--state-dir", str(state_dir)]
    argv += ["--redis", redis_server.address, "--control-port", str(ports[0])]
    argv += ["--info-port", str(ports[1]), "--http", "--http-port", str(ports[2])]
    argv += ["--http-config", str(HTTP_CONFIG)]
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        assert main(argv) == 0
    components = {c.name: c for c in read_state(state_dir)}
    yield Running(
        state_dir,
        output.getvalue(),
        components["redis"],
        components["manager"],
        components["http"],
        ports,
    )
    stop(state_dir, force=True)


def test_start_prints_the_addresses(running: Running, redis_server: Component) -> None:
    control, info, http = running.ports
    assert f"Redis: {redis_server.address} (external)" in running.output
    assert f"RE Manager: control tcp://127.0.0.1:{control}, info tcp://127.0.0.1:{info}" in (
        running.output
    )
    assert f"HTTP server: http://127.0.0.1:{http} (pid {running.http.pid})" in running.output
    assert running.manager.alive and running.http.alive


def test_queue_a_plan_over_0mq(running: Running, profile: Path) -> None:
    RM = running.client()
    try:
        assert RM.status()["manager_state"] == "idle"
        RM.queue_clear()
        RM.environment_open()
        RM.wait_for_idle(timeout=60)
        assert RM.status()["worker_environment_exists"]
        # The worker was told which stand file to build.
        assert (profile / "stand.seen").read_text() == str((profile / "stand.yaml").resolve())

        RM.item_add(BPlan("count", ["sensor"], num=3))
        ran = len(RM.history_get()["items"])
        RM.queue_start()
        wait_until_run(RM, history=ran + 1)
        result = RM.history_get()["items"][-1]["result"]
        assert result["exit_status"] == "completed", result
        assert len(result["run_uids"]) == 1

        with pytest.raises(RM.RequestFailedError, match="not in the list of allowed plans"):
            RM.item_add(BPlan("scan", ["sensor"], num=3))

        # While a plan runs, a safe stop is refused and changes nothing.
        RM.item_add(BPlan("count", ["sensor"], num=10000, delay=0.01))
        RM.queue_start()
        RM.wait_for_condition(
            lambda status: status["manager_state"] == "executing_queue", timeout=30
        )
        with pytest.raises(ManagerBusy, match="--force") as busy:
            stop(running.state_dir)
        assert "`teststand queue abort`" in str(busy.value) and "qserver re" not in str(busy.value)
        assert running.manager.alive and running.http.alive
        assert RM.status(reload=True)["manager_state"] == "executing_queue"
        RM.re_pause("immediate")
        RM.wait_for_idle_or_paused(timeout=30)
        RM.re_abort()
        RM.wait_for_idle(timeout=30)
        assert RM.history_get()["items"][-1]["result"]["exit_status"] == "aborted"
        RM.queue_clear()  # an aborted plan goes back to the front of the queue

        RM.environment_close()
        RM.wait_for_idle(timeout=60)
        assert not RM.status(reload=True)["worker_environment_exists"]
    finally:
        RM.close()


def test_http_server_wants_a_key_and_keeps_observers_read_only(running: Running) -> None:
    url = running.http.address
    operator = http_api_key(url, "operator", http_password(running.state_dir, "operator"))
    observer = http_api_key(url, "observer", http_password(running.state_dir, "observer"))
    as_operator = {"Authorization": f"ApiKey {operator}"}
    as_observer = {"Authorization": f"ApiKey {observer}"}

    reply = httpx.get(f"{url}/api/status", headers=as_operator)
    assert reply.status_code == 200 and reply.json()["manager_state"] == "idle"
    assert httpx.get(f"{url}/api/status").status_code == 401
    assert (
        httpx.get(f"{url}/api/status", headers={"Authorization": "ApiKey 00ff"}).status_code == 401
    )
    assert httpx.get(f"{url}/api/status", headers=as_observer).status_code == 200

    item = {"item": {"item_type": "plan", "name": "count", "args": [["sensor"]]}}
    queue = httpx.get(f"{url}/api/queue/get", headers=as_observer).json()["items"]
    refused = httpx.post(f"{url}/api/queue/item/add", json=item, headers=as_observer)
    assert refused.status_code in (401, 403) and "write:queue:edit" in refused.text
    assert httpx.get(f"{url}/api/queue/get", headers=as_observer).json()["items"] == queue

    added = httpx.post(f"{url}/api/queue/item/add", json=item, headers=as_operator).json()
    assert added["success"], added
    assert added["item"]["user"] == "operator" and added["item"]["user_group"] == "primary"
    removed = {"uid": added["item"]["item_uid"]}
    assert httpx.post(f"{url}/api/queue/item/remove", json=removed, headers=as_operator).is_success

    with pytest.raises(QserverError, match="HTTP 401"):
        http_api_key(url, "operator", "not-the-password")


def test_a_second_start_is_refused_naming_the_pids(
    running: Running, profile: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["qserver", "start", "--profile", str(profile), "--state-dir", str(running.state_dir)]
    assert main(argv) == 1
    error = capsys.readouterr().err
    assert "already running" in error
    assert f"manager pid {running.manager.pid}" in error and f"http pid {running.http.pid}" in error
    with pytest.raises(AlreadyRunning):
        start(QserverOptions(profile=profile, state_dir=running.state_dir, redis="redis://x:1"))
    assert running.manager.alive


def test_status_shows_what_runs(running: Running, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["qserver", "status", "--state-dir", str(running.state_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["redis", "reachable", "external"]
    assert lines[1].split()[:4] == ["manager", "running", "pid", str(running.manager.pid)]
    assert "state idle, environment closed, 0 queued, locked: no" in lines[1]
    assert lines[2].split()[:2] == ["http", "running"]

    RM = running.client()
    try:
        RM.lock("status-test", environment=True, queue=True)
        assert main(["qserver", "status", "--state-dir", str(running.state_dir)]) == 0
        assert "locked: environment, queue" in capsys.readouterr().out
    finally:
        RM.unlock("status-test")
        RM.close()


def test_embedded_redis_start_status_stop(
    profile: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The defaults: embedded Redis, state under the stand's data_dir; a stale state is seen."""
    state_dir = profile / "data" / "qserver"
    state_dir.mkdir(parents=True)
    ended = subprocess.Popen(["true"])
    ended.wait()
    stale = [{"name": "manager", "address": "tcp://x:1 tcp://x:2", "pid": ended.pid}]
    (state_dir / STATE_FILE).write_text(json.dumps({"components": stale}))
    where = ["--profile", str(profile)]
    assert main(["qserver", "status", *where]) == 3
    assert "STALE (not running)" in capsys.readouterr().out

    before = live_children()
    ports = ["--control-port", str(free_port()), "--info-port", str(free_port())]
    assert main(["qserver", "start", *where, *ports]) == 0
    out = capsys.readouterr().out
    redis, manager = read_state(state_dir)
    assert redis.pid is not None and redis.alive and manager.alive
    assert f"Redis: {redis.address} (pid {redis.pid})" in out
    ping_redis(RedisAddress.parse(redis.address))
    assert main(["qserver", "status", *where]) == 0
    assert "manager  running" in capsys.readouterr().out

    assert main(["qserver", "stop", *where]) == 0
    assert capsys.readouterr().out.splitlines() == ["stopped manager", "stopped redis"]
    assert not redis.alive and not manager.alive
    assert live_children() == before
    assert not (state_dir / STATE_FILE).exists()
    assert (state_dir / "redis.rdb").exists()  # Redis saved the queue on the way out
    assert main(["qserver", "status", *where]) == 3
    assert main(["qserver", "stop", *where]) == 0
    assert "is not running" in capsys.readouterr().out


def test_a_failed_start_stops_what_it_started(profile: Path, tmp_path: Path) -> None:
    broken = tmp_path / "httpserver.yml"
    broken.write_text("authentication:\n  no_such_option: 1\n")
    before = live_children()
    options = QserverOptions(
        profile=profile,
        state_dir=tmp_path / "state",
        control_port=free_port(),
        info_port=free_port(),
        http=True,
        http_port=free_port(),
        http_config=broken,
    )
    with pytest.raises(StartFailed, match="http exited while starting") as failure:
        start(options)
    assert "httpserver.log" in str(failure.value)
    assert live_children() == before
    assert not (tmp_path / "state" / STATE_FILE).exists()


def test_unreachable_redis_starts_nothing(
    profile: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = live_children()
    argv = ["qserver", "start", "--profile", str(profile), "--state-dir", str(tmp_path / "s")]
    assert main([*argv, "--redis", "redis://127.0.0.1:1"]) == 1
    assert "Redis at redis://127.0.0.1:1/0 is not reachable" in capsys.readouterr().err
    with pytest.raises(RedisUnreachable) as failure:
        start(
            QserverOptions(profile=profile, state_dir=tmp_path / "s", redis="redis://127.0.0.1:1")
        )
    assert isinstance(failure.value, errors.TeststandError)
    assert not (tmp_path / "s").exists()
    assert live_children() == before


def test_a_stand_file_with_errors_starts_nothing(profile: Path, tmp_path: Path) -> None:
    stand = yaml.safe_load((profile / "stand.yaml").read_text())
    stand["slots"][1]["hv"] = "nohv:0"
    bad = tmp_path / "stand.yaml"
    bad.write_text(yaml.safe_dump(stand))
    before = live_children()
    with pytest.raises(ConfigError, match=r"slots\.1\.hv: no instrument named 'nohv'"):
        start(QserverOptions(profile=profile, stand=bad, state_dir=tmp_path / "s"))
    assert not (tmp_path / "s").exists()
    assert live_children() == before


def test_a_port_in_use_starts_nothing(profile: Path, tmp_path: Path) -> None:
    before = live_children()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        options = QserverOptions(profile=profile, state_dir=tmp_path / "s", info_port=free_port())
        for field in ("control_port", "redis_port"):
            with pytest.raises(PortInUse, match=f"127.0.0.1:{port} .*--{field.replace('_', '-')}"):
                start(replace(options, **{field: port}))
    assert not (tmp_path / "s").exists()
    assert live_children() == before


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"redis": "http://127.0.0.1:6379"}, "expected redis://HOST:PORT"),
        ({"redis": "redis://user:secret@127.0.0.1:6379"}, "without a password"),
        ({"redis": "redis://127.0.0.1:6379/x"}, "must be a number"),
        ({"redis": "redis://127.0.0.1:port"}, "expected redis://HOST:PORT"),
        ({"existing_plans": Path("nowhere.yaml")}, "qserver-list-plans-devices --startup-dir"),
        ({"startup_dir": Path("nowhere")}, "startup directory nowhere does not exist"),
        ({"ipython_kernel": True}, "profile_NAME/startup"),
        ({"host": "0.0.0.0"}, "QSERVER_ZMQ_PRIVATE_KEY_FOR_SERVER"),
        ({"http": True, "http_config": Path("nowhere.yml")}, "HTTP server config"),
    ],
)
def test_bad_options_are_typed_errors(
    profile: Path, tmp_path: Path, change: dict[str, object], message: str
) -> None:
    options = replace(QserverOptions(profile=profile, state_dir=tmp_path / "s"), **change)
    os.environ.pop("QSERVER_ZMQ_PRIVATE_KEY_FOR_SERVER", None)
    with pytest.raises(QserverConfigError, match=message) as failure:
        start(options)
    assert isinstance(failure.value, ValueError)
    assert not (tmp_path / "s").exists()


def test_stop_signals_a_manager_that_does_not_answer(tmp_path: Path) -> None:
    """A recorded manager whose 0MQ socket is silent gets SIGTERM, then its group SIGKILL."""
    sleeper = subprocess.Popen(["sleep", "60"], start_new_session=True)
    cmdline = Path(f"/proc/{sleeper.pid}/cmdline")
    while not cmdline.read_bytes():  # empty for a moment after exec
        pass
    try:
        silent = f"tcp://127.0.0.1:{free_port()} tcp://127.0.0.1:{free_port()}"
        record = {"name": "manager", "address": silent, "pid": sleeper.pid, "marker": "sleep 60"}
        tmp_path.joinpath(STATE_FILE).write_text(json.dumps({"components": [record]}))
        assert [c.name for c in stop(tmp_path, timeout=5.0)] == ["manager"]
        assert sleeper.wait(5) == -signal.SIGTERM
    finally:
        sleeper.kill()


def test_stop_clears_a_stale_state_and_creates_nothing(tmp_path: Path) -> None:
    ended = subprocess.Popen(["true"])
    ended.wait()
    record = {"name": "redis", "address": "redis://127.0.0.1:1/0", "pid": ended.pid}
    (tmp_path / STATE_FILE).write_text(json.dumps({"components": [record]}))
    assert stop(tmp_path) == []
    assert not (tmp_path / STATE_FILE).exists()
    assert stop(tmp_path / "never-used") == []
    assert not (tmp_path / "never-used").exists()
