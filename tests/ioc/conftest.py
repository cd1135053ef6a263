"""The simulated stand served by `teststand ioc`, on loopback with isolated CA settings.

One session: the simulators (`teststand sim serve-stand --tcp`, a process whose stdin injects
faults) and one IOC process serving them under `TSI:`. Tests that restart an IOC start their own,
on another server port of the session's Channel Access (`helpers.CA`, set up in
tests/conftest.py before any CA context: every port is in the address list from the start).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from bluesky import RunEngine
from helpers import CA, run, stand_dict

from teststand.app.ioc.process import IocProcess, SimulatorProcess
from teststand.stand import TestStand, build

TESTSTAND = str(Path(sys.executable).with_name("teststand"))
PREFIX = "TSI:"


#: Server ports for more CA servers on loopback (collectors, processing devices), from the
#: session's CA (every client searches them all).
SIDE_PORTS = [CA.lease() for _ in range(6)]


class Sims(SimulatorProcess):
    """The simulators' process serving `data` (`ask("hv status")`: a console line and its
    reply); `stop()` also removes its stand file."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.file = Path(f"/tmp/teststand-ioc-sims-{os.getpid()}-{id(self)}.yaml")
        self.file.write_text(yaml.safe_dump(data))
        super().__init__(self.file)

    def stop(self, timeout: float = 20.0) -> None:
        super().stop(timeout)
        self.file.unlink(missing_ok=True)


class Ioc(IocProcess):
    """A `teststand ioc` process serving `data` (sim: false, the simulators' URLs) on a server
    port of the session's Channel Access (`helpers.CA`); `close()` gives the port back."""

    def __init__(
        self, data: dict[str, Any], prefix: str, *extra: str, watchdog: bool = False
    ) -> None:
        self.file = Path(f"/tmp/teststand-ioc-{prefix.strip(':')}-{os.getpid()}.yaml")
        self.file.write_text(yaml.safe_dump(data))
        args = [*extra] if watchdog else [*extra, "--no-watchdog"]
        log = self.file.with_suffix(".log")
        super().__init__(self.file, prefix, poll=0.1, args=args, ca=CA, log=log)
        self.start()


def ioc_data(sims: Sims, speed: float) -> dict[str, Any]:
    data = stand_dict(speed)
    data["sim"] = False
    for name, instrument in data["instruments"].items():
        instrument["url"] = sims.urls[name]
    return data


@pytest.fixture(scope="session")
def sims(ca_repeater: None) -> Iterator[Sims]:
    started = Sims(stand_dict(200.0))
    yield started
    started.stop()


@pytest.fixture(scope="session")
def ioc(sims: Sims) -> Iterator[Ioc]:
    started = Ioc(ioc_data(sims, 200.0), PREFIX)
    yield started
    started.close()


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
