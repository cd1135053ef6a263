"""A real InfluxDB 1.x (Debian's `influxd`) for tests: temporary config and data, loopback port.

Auth is on: the admin user `admin`/`secret` is created at start (a wrong password is a real 401).
`stop()` and `start()` again keep the data (the outage tests kill the database for a while).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from teststand.app.ioc.process import terminate

USER, PASSWORD = "admin", "secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_http(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer in {timeout} s: {log.read_text()[-2000:]}")


class Influxd:
    def __init__(self) -> None:
        executable = shutil.which("influxd") or "/usr/bin/influxd"
        if not Path(executable).exists():
            raise RuntimeError("influxd is missing: `make test` installs Debian's influxdb package")
        self.executable = executable
        self.dir = Path(tempfile.mkdtemp(prefix="teststand-influxd-"))
        self.port, rpc = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = self.dir / "influxdb.conf"
        self.config.write_text(
            f'reporting-disabled = true\nbind-address = "127.0.0.1:{rpc}"\n'
            f'[meta]\n  dir = "{self.dir}/meta"\n'
            f'[data]\n  dir = "{self.dir}/data"\n  wal-dir = "{self.dir}/wal"\n'
            "  query-log-enabled = false\n"
            # The cache goes to disk at 1 MB (default 25 MB): a stand's few points a second
            # would fill the default for hours, and a soak would see that filling as growth.
            '  cache-snapshot-memory-size = "1m"\n'
            f'[http]\n  bind-address = "127.0.0.1:{self.port}"\n  auth-enabled = true\n'
            "  log-enabled = false\n"
            "[monitor]\n  store-enabled = false\n"
            "[continuous_queries]\n  enabled = false\n"
            "[subscriber]\n  enabled = false\n"
        )
        self.log = self.dir / "influxd.log"
        self.start()
        self.query(f"CREATE USER {USER} WITH PASSWORD '{PASSWORD}' WITH ALL PRIVILEGES", auth=False)

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [self.executable, "-config", str(self.config)], stdout=log, stderr=log
            )
        _wait_http(self.url + "/ping", self.process, self.log, 60)

    def stop(self) -> None:
        terminate(self.process, 20.0)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def query_all(self, q: str, db: str | None = None, auth: bool = True) -> list[dict[str, Any]]:
        """The results of each statement of `q` (`;`-separated), times in epoch ns."""
        params = {"q": q, "epoch": "ns"}
        if db:
            params["db"] = db
        if auth:
            params |= {"u": USER, "p": PASSWORD}
        response = httpx.post(self.url + "/query", params=params, timeout=60)
        response.raise_for_status()
        results: list[dict[str, Any]] = response.json()["results"]
        return results

    def query(self, q: str, db: str | None = None, auth: bool = True) -> list[dict[str, Any]]:
        """The series of an InfluxQL query (epoch ns); raises on an error."""
        result = self.query_all(q, db, auth)[0]
        if "error" in result:
            raise RuntimeError(result["error"])
        series: list[dict[str, Any]] = result.get("series", [])
        return series

    def create(self, db: str) -> str:
        self.query(f'CREATE DATABASE "{db}"')
        return db


class VictoriaMetrics:
    """Debian's `victoria-metrics`: takes InfluxDB line protocol on /write and /api/v2/write."""

    def __init__(self) -> None:
        executable = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"
        self.dir = Path(tempfile.mkdtemp(prefix="teststand-vm-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = self.dir / "vm.log"
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    executable,
                    f"-httpListenAddr=127.0.0.1:{self.port}",
                    f"-storageDataPath={self.dir}/data",
                ],
                stdout=log,
                stderr=log,
            )
        _wait_http(self.url + "/health", self.process, self.log, 60)

    def export(self, match: str) -> list[dict[str, Any]]:
        httpx.get(self.url + "/internal/force_flush", timeout=30)
        response = httpx.get(self.url + "/api/v1/export", params={"match[]": match}, timeout=30)
        response.raise_for_status()
        import json

        return [json.loads(row) for row in response.text.splitlines() if row]

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(20)
        shutil.rmtree(self.dir, ignore_errors=True)
