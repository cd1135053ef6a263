"""`teststand tiled serve`: refusing insecure binds, persistence, a real PostgreSQL catalog."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from tiled.client import from_uri

from teststand.app.profile import SessionCatalog, session_catalog
from teststand.storage.catalog import Catalog
from teststand.storage.config import StorageConfig
from teststand.storage.embedded import EmbeddedServer
from teststand.storage.errors import InsecureBind, TiledUnreachable
from teststand.storage.runwriter import write_run
from teststand.storage.server import ServerSettings, catalog_initialized, resolve_config

TESTSTAND = str(Path(sys.executable).with_name("teststand"))


def documents(uid: str, module_id: str, values: list[float]) -> list[tuple[str, dict[str, Any]]]:
    """A minimal, valid run: start, one stream, events, stop."""
    key = {"dtype": "number", "shape": [], "source": "sim", "units": "V"}
    docs: list[tuple[str, dict[str, Any]]] = [
        ("start", {"uid": uid, "time": 1.0e9, "module_id": module_id, "test": "iv"}),
        (
            "descriptor",
            {
                "uid": f"{uid}-d",
                "run_start": uid,
                "time": 1.0e9,
                "name": "primary",
                "data_keys": {"v": key},
            },
        ),
    ]
    for i, value in enumerate(values, start=1):
        event = {"uid": f"{uid}-e{i}", "descriptor": f"{uid}-d", "time": 1.0e9 + i}
        event.update(seq_num=i, data={"v": value}, timestamps={"v": 1.0e9 + i})
        docs.append(("event", event))
    stop = {"uid": f"{uid}-s", "run_start": uid, "time": 1.0e9 + 99, "exit_status": "success"}
    docs.append(("stop", stop))
    return docs


def test_non_loopback_bind_without_key_is_refused(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TILED_SINGLE_USER_API_KEY"}
    command = [TESTSTAND, "tiled", "serve", "--host", "0.0.0.0", "--port", "0"]
    done = subprocess.run(
        [*command, "--data", str(tmp_path)], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 1
    assert "refusing to serve on 0.0.0.0" in done.stderr and "--api-key" in done.stderr


def test_non_loopback_bind_with_key_is_accepted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("TILED_SINGLE_USER_API_KEY", "TESTSTAND_TILED_CATALOG"):
        monkeypatch.setenv(name, "")
    with pytest.raises(InsecureBind):
        resolve_config(ServerSettings(data_dir=tmp_path, host="192.0.2.1"))
    config = resolve_config(ServerSettings(data_dir=tmp_path, host="0.0.0.0", api_key="s3cret"))
    assert config["authentication"]["single_user_api_key"] == "s3cret"


def test_a_catalog_left_uninitialized_by_a_killed_first_start_is_initialized(
    tmp_path: Path,
) -> None:
    """Found by the stand soak: Tiled killed during its first start left an empty catalog.db,
    and every restart then skipped the initialization and failed."""
    (tmp_path / "catalog.db").write_bytes(b"")  # created, never initialized
    assert not catalog_initialized(tmp_path / "catalog.db")
    args = resolve_config(ServerSettings(data_dir=tmp_path))["trees"][0]["args"]
    assert args.get("init_if_not_exists", True) is True
    server = EmbeddedServer(tmp_path)
    try:
        server.wait_ready(180)
        assert catalog_initialized(tmp_path / "catalog.db")
        args = resolve_config(ServerSettings(data_dir=tmp_path))["trees"][0]["args"]
        assert args["init_if_not_exists"] is False  # an initialized catalog: no second init
    finally:
        server.close()


def test_embedded_server_keeps_data_key_and_port_across_restarts(tmp_path: Path) -> None:
    with EmbeddedServer(tmp_path / "data") as server:
        write_run(server.client(), documents("run-1", "M-7", [1.0, 2.0]))
        url, key = server.wait_ready(180), server.api_key
    assert (tmp_path / "data" / "catalog.db").exists()
    with EmbeddedServer(tmp_path / "data") as again:
        assert again.wait_ready(180) == url and again.api_key == key
        assert url in again.browse_message and key in again.browse_message
        data = again.client()["run-1"]["primary"].read()
        assert list(data["v"].values) == [1.0, 2.0]


def ended(pid: int) -> None:
    """Wait until process `pid` has ended (without reaping it: its Popen does that)."""
    fd = os.pidfd_open(pid)
    try:
        assert select.select([fd], [], [], 30)[0], f"process {pid} did not end"
    finally:
        os.close(fd)


def test_the_embedded_server_ignores_the_terminals_signals_and_comes_back(tmp_path: Path) -> None:
    """Ctrl-C at the prompt signals the terminal's process group: the child is not in it. A
    child that ended anyway (killed, crashed) is started again on the next connection."""
    with EmbeddedServer(tmp_path / "data") as server:
        write_run(server.client(timeout=120), documents("run-1", "M-7", [1.0]))
        assert os.getsid(server.pid) == server.pid != os.getsid(0)
        assert os.getpgid(server.pid) != os.getpgid(0)
        first, url = server.pid, server.wait_ready(60)
        os.kill(first, signal.SIGKILL)
        ended(first)
        client = server.client(timeout=120)  # restarted, on the same port
        assert server.pid != first and server.restarts == 1 and server.wait_ready() == url
        assert list(client["run-1"]["primary"].read()["v"].values) == [1.0]


def test_the_session_catalog_survives_a_dead_server_and_says_so_in_one_line(
    tmp_path: Path,
) -> None:
    config = StorageConfig(data_dir=tmp_path / "data")
    with EmbeddedServer(config.data_path) as server:
        write_run(server.client(timeout=120), documents("run-1", "M-7", [1.0]))
        catalog = session_catalog(config, SimpleNamespace(embedded=server))
        assert [run.uid for run in catalog.search(module_id="M-7")] == ["run-1"]
        os.kill(server.pid, signal.SIGKILL)
        ended(server.pid)
        assert [run.uid for run in catalog.search(module_id="M-7")] == ["run-1"]
        assert server.restarts == 1
        stale = from_uri(server.wait_ready(), api_key=server.api_key)
    gone = SessionCatalog(lambda: stale)  # a server that stopped for good
    with pytest.raises(TiledUnreachable, match="stopped answering") as failed:
        gone.search(module_id="M-7")
    assert "\n" not in str(failed.value)


def test_postgresql_catalog(postgres: str, tmp_path: Path) -> None:
    command = [TESTSTAND, "tiled", "serve", "--catalog", postgres, "--port", "0"]
    server = subprocess.Popen(
        [*command, "--data", str(tmp_path), "--log-file", str(tmp_path / "log")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        key = server.stdout.readline().split()[1]
        assert url.startswith("http://127.0.0.1:"), (tmp_path / "log").read_text()
        client = from_uri(url, api_key=key)
        write_run(client, documents("pg-1", "M-1", [1.5, 2.5, 3.5]))
        write_run(client, documents("pg-2", "M-2", [4.0]))
        found = Catalog(client).search(module_id="M-1")
        assert [run.uid for run in found] == ["pg-1"]
        assert list(Catalog(client).xarray("pg-1")["v"].values) == [1.5, 2.5, 3.5]
    finally:
        server.terminate()
        server.wait(30)
