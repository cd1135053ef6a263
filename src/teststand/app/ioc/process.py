"""`IocProcess`: `teststand ioc` as a child process (the demo, the benchmark and the tests).

`local_ca_environment()` is the loopback-only Channel Access set-up they use, so that nothing
leaves the machine and no other IOC on the network is seen.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from teststand.errors import TeststandError

LOOPBACK = "127.0.0.1"


def local_ca_environment() -> dict[str, str]:
    """EPICS settings for clients and servers on loopback only (the caller's own EPICS_* win)."""
    wanted = {
        "EPICS_CA_AUTO_ADDR_LIST": "NO",
        "EPICS_CA_ADDR_LIST": LOOPBACK,
        "EPICS_CAS_INTF_ADDR_LIST": LOOPBACK,
        "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO",
        "EPICS_CAS_BEACON_ADDR_LIST": LOOPBACK,
    }
    return {key: os.environ.get(key, value) for key, value in wanted.items()}


class IocProcess:
    """Start `teststand ioc STAND --prefix P` and wait until it serves; `stop()` ends it (the IOC
    then writes VSET 0 to every HV channel and releases the instruments)."""

    def __init__(
        self,
        stand_file: Path,
        prefix: str,
        *,
        poll: float = 0.2,
        env: Mapping[str, str] | None = None,
        log: Path | None = None,
    ) -> None:
        self.stand_file = stand_file
        self.prefix = prefix
        self.poll = poll
        self.env = {**os.environ, **(env or {})}
        self.log = log or stand_file.with_suffix(".ioc.log")
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> IocProcess:
        command = [sys.executable, "-m", "teststand.app.cli", "ioc", str(self.stand_file)]
        command += ["--prefix", self.prefix, "--interfaces", LOOPBACK, "--poll", str(self.poll)]
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=log, text=True, env=self.env
            )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("serving"):
            self.process.wait(30)
            tail = self.log.read_text()[-2000:]
            raise TeststandError(f"the IOC for {self.prefix} did not start:\n{tail}")
        return self

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout)
        self.process = None

    def __enter__(self) -> IocProcess:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
