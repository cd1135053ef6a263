"""The simulated stand served by `teststand ioc`, on loopback with isolated CA settings.

One session: the simulators (`teststand sim serve-stand --tcp`, a process whose stdin injects
faults) and one IOC process serving them under `TSI:`. Tests that restart an IOC start their own.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from bluesky import RunEngine
from helpers import run, stand_dict

from teststand.stand import TestStand, build

TESTSTAND = str(Path(sys.executable).with_name("teststand"))
PREFIX = "TSI:"


def _free_port() -> int:
    """A port free for both TCP and UDP on loopback (CA uses both)."""
    while True:
        with socket.socket() as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port


# Isolated Channel Access: set before libca (aioca) or caproto read the environment.
_SERVER_PORT, _REPEATER_PORT = _free_port(), _free_port()
#: Server ports for more CA servers on loopback (collectors, processing devices): a unicast search
#: reaches only one of the servers sharing a UDP port, so each gets its own, and every client
#: searches them all (`host:port` entries of EPICS_CA_ADDR_LIST).
SIDE_PORTS = [_free_port() for _ in range(6)]
CA_ENV = {
    "EPICS_CA_AUTO_ADDR_LIST": "NO",
    # "127.0.0.1": this process's EPICS_CA_SERVER_PORT (a test's own IOC, as in test_demo)
    "EPICS_CA_ADDR_LIST": " ".join(
        ["127.0.0.1", *(f"127.0.0.1:{p}" for p in [_SERVER_PORT, *SIDE_PORTS])]
    ),
    "EPICS_CA_SERVER_PORT": str(_SERVER_PORT),
    "EPICS_CA_REPEATER_PORT": str(_REPEATER_PORT),
    "EPICS_CAS_INTF_ADDR_LIST": "127.0.0.1",
    "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO",
    "EPICS_CAS_BEACON_ADDR_LIST": "127.0.0.1",
    "EPICS_CAS_BEACON_PORT": str(_REPEATER_PORT),
}
os.environ.update(CA_ENV)


class Sims:
    """The simulators' process: `ask("hv status")` sends a console line and returns the reply."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.file = Path(f"/tmp/teststand-ioc-sims-{os.getpid()}-{id(self)}.yaml")
        self.file.write_text(yaml.safe_dump(data))
        self.process = subprocess.Popen(
            [TESTSTAND, "sim", "serve-stand", str(self.file), "--tcp"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.urls = dict(self.process.stdout.readline().split() for _ in data["instruments"])
        self.lock = threading.Lock()

    def ask(self, line: str) -> str:
        assert self.process.stdin is not None and self.process.stdout is not None
        with self.lock:
            self.process.stdin.write(line + "\n")
            self.process.stdin.flush()
            return self.process.stdout.readline().strip()

    def status(self, name: str) -> Any:
        return json.loads(self.ask(f"{name} status"))

    def vmon(self) -> list[float]:
        return [abs(c["vmon"]) for c in self.status("hv")["channels"]]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        self.file.unlink(missing_ok=True)


class Ioc:
    """A `teststand ioc` process serving `data` (sim: false, the simulators' URLs)."""

    def __init__(
        self, data: dict[str, Any], prefix: str, *extra: str, watchdog: bool = False
    ) -> None:
        self.prefix = prefix
        self.watchdog = watchdog
        self.file = Path(f"/tmp/teststand-ioc-{prefix.strip(':')}-{os.getpid()}.yaml")
        self.file.write_text(yaml.safe_dump(data))
        self.log = self.file.with_suffix(".log")
        self.start(*extra)

    def start(self, *extra: str) -> None:
        command = [TESTSTAND, "ioc", str(self.file), "--prefix", self.prefix]
        command += ["--interfaces", "127.0.0.1", "--poll", "0.1", *extra]
        if not self.watchdog:
            command.append("--no-watchdog")
        with self.log.open("a") as log:
            self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line.startswith("serving"), f"the IOC did not start: {self.log.read_text()[-3000:]}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(20)


def ioc_data(sims: Sims, speed: float) -> dict[str, Any]:
    data = stand_dict(speed)
    data["sim"] = False
    for name, instrument in data["instruments"].items():
        instrument["url"] = sims.urls[name]
    return data


@pytest.fixture(scope="session", autouse=True)
def repeater() -> Iterator[None]:
    """A CA repeater on the session's repeater port (libca registers with one)."""
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("caproto-repeater")), "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    yield
    process.terminate()
    process.wait(10)


@pytest.fixture(scope="session")
def sims() -> Iterator[Sims]:
    started = Sims(stand_dict(200.0))
    yield started
    started.stop()


@pytest.fixture(scope="session")
def ioc(sims: Sims) -> Iterator[Ioc]:
    started = Ioc(ioc_data(sims, 200.0), PREFIX)
    yield started
    started.stop()


@pytest.fixture
def served_dict(ioc: Ioc, sims: Sims) -> dict[str, Any]:
    """The stand file a RunEngine uses for the served stand."""
    data = ioc_data(sims, 200.0)
    data["server"] = {"prefix": ioc.prefix, "connect_timeout": 30.0}
    return data


@pytest.fixture
def make_served(RE: RunEngine) -> Iterator[Callable[[dict[str, Any]], TestStand]]:
    built: list[TestStand] = []

    def make(data: dict[str, Any]) -> TestStand:
        stand = build(data)
        built.append(stand)
        return stand

    yield make
    for stand in built:
        run(RE, stand.close)


async def hv_safe_and_off(stand: TestStand) -> None:
    """Every HV channel at VSET 0 and switched off (what a test leaves behind)."""
    for channel in stand.instruments["hv"].channels.values():  # type: ignore[attr-defined]
        await channel.setpoint.set(0.0)
        await channel.switched_on.set(False)


@pytest.fixture
def served(
    RE: RunEngine, make_served: Callable[[dict[str, Any]], TestStand], served_dict: dict[str, Any]
) -> Iterator[TestStand]:
    """The stand over CA, holding control; its HV at 0 V and off after the test."""
    stand = make_served(served_dict)
    yield stand
    run(RE, lambda: hv_safe_and_off(stand))


class SideServer:
    """A CA server process on side port `port` (loopback), started when it prints `serving`;
    `env` is added to its environment. `stop()` ends it."""

    def __init__(self, command: list[str], port: int, **env: str) -> None:
        environment = {**os.environ, "EPICS_CA_SERVER_PORT": str(port), **env}
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=environment)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line.startswith("serving"), f"{command} did not start"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(20)


def wait_for(condition: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or condition}")
