"""`teststand tiled serve`: refusing insecure binds, persistence, a real PostgreSQL catalog."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tiled.client import from_uri

from teststand.storage.catalog import Catalog
from teststand.storage.embedded import EmbeddedServer
from teststand.storage.errors import InsecureBind
from teststand.storage.runwriter import write_run
from teststand.storage.server import ServerSettings, resolve_config

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
