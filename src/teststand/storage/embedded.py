"""The embedded Tiled server: started by the stand when the stand file names no server.

It runs `teststand tiled serve` in a child process (so it never competes with the RunEngine for
the interpreter lock) with its SQLite catalog and files under the data directory, so the data
persists across restarts. The stand does not wait for it: runs are journaled meanwhile.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from teststand.storage.client import connect
from teststand.storage.errors import StorageError, TiledUnreachable
from teststand.storage.server import stored_api_key

log = logging.getLogger("teststand.storage")
STATE_FILE = "server.json"


class EmbeddedServer:
    """A local Tiled server in a child process that ends with this process."""

    def __init__(self, data_dir: Path, detector_dir: Path | None = None) -> None:
        self.data_dir = data_dir.expanduser().resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.detector_dir = detector_dir
        self.api_key = stored_api_key(self.data_dir)
        self.restarts = 0
        self._log = self.data_dir / "server.log"
        self._lock = threading.Lock()
        self._closed = False
        self._start()

    def _start(self) -> None:
        """Start the child in its own session: the terminal's Ctrl-C (SIGINT to the foreground
        process group) reaches the session, never the server. It ends when our stdin closes."""
        self.url = ""
        self._ready = threading.Event()
        self._failure = ""
        command = [sys.executable, "-m", "teststand.app.cli", "tiled", "serve"]
        command += ["--data", str(self.data_dir), "--port", str(self._last_port())]
        command += ["--embedded", "--log-file", str(self._log)]
        if self.detector_dir is not None:
            command += ["--read", str(self.detector_dir.expanduser().resolve())]
        with self._log.open("a") as errors:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
                cwd=self.data_dir,
                env={**os.environ, "TILED_SINGLE_USER_API_KEY": self.api_key},
                start_new_session=True,
            )
        threading.Thread(target=self._watch, name="tiled-embedded", daemon=True).start()

    def ensure_running(self) -> None:
        """Restart the server if it ended (killed, crashed) since it started; on the same port
        when that is free, so clients that kept the URL find it again."""
        with self._lock:
            if self._closed or self._process.poll() is None:
                return
            code = self._process.returncode
            log.warning(
                "the embedded Tiled server (pid %d) ended with exit code %s; restarting it "
                "(its log: %s)",
                self._process.pid,
                code,
                self._log,
            )
            for stream in (self._process.stdin, self._process.stdout):
                if stream is not None:
                    stream.close()
            self.restarts += 1
            self._start()

    def _last_port(self) -> int:
        try:
            return int(json.loads((self.data_dir / STATE_FILE).read_text())["port"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0

    def _watch(self) -> None:
        assert self._process.stdout is not None
        line = self._process.stdout.readline().strip()
        if line.startswith("http"):
            self.url = line
            port = int(line.rsplit(":", 1)[1])
            (self.data_dir / STATE_FILE).write_text(json.dumps({"port": port, "url": line}))
            log.info("%s", self.browse_message)
        else:
            self._process.wait()
            lines = self._log.read_text(errors="replace").strip().splitlines()
            self._failure = lines[-1] if lines else "it exited without printing its address"
        self._ready.set()

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def browse_message(self) -> str:
        return f"Tiled (embedded, data in {self.data_dir}): {self.url}/?api_key={self.api_key}"

    def wait_ready(self, timeout: float = 120.0) -> str:
        """The server's URL once it answers; a typed error if it failed to start."""
        if not self._ready.wait(timeout):
            raise StorageError(
                f"the embedded Tiled server did not start within {timeout:.0f} s; see {self._log}"
            )
        if not self.url:
            raise StorageError(
                f"the embedded Tiled server did not start: {self._failure or 'no address'}; see "
                f"{self._log}"
            )
        return self.url

    def client(self, timeout: float = 120.0) -> Any:
        """A client of the server, restarted first if it ended."""
        self.ensure_running()
        try:
            return connect(self.wait_ready(timeout), self.api_key)
        except TiledUnreachable:
            if self._process.poll() is None:
                raise
        self.ensure_running()  # it ended meanwhile
        return connect(self.wait_ready(timeout), self.api_key)

    def close(self, timeout: float = 10.0) -> None:
        """Stop the server (it also stops by itself when this process ends)."""
        with self._lock:
            self._closed = True
        if self._process.poll() is None:
            assert self._process.stdin is not None
            self._process.stdin.close()
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()

    def __enter__(self) -> EmbeddedServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
