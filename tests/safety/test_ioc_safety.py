"""Safety that holds when the RunEngine dies: the simulated stand served by `teststand ioc`
(a real process, its watchdog inside), a RunEngine in another process, killed, stopped or
halted in the middle of an IV scan at 500 V. The simulators run here, so their history shows
what the instruments really did."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from safety_helpers import History, safety_stand_dict, wait_until

from teststand.config import load_stand
from teststand.sim.stand import SimStand
from teststand.stand.simulation import start_simulated_stand

TESTSTAND = str(Path(sys.executable).with_name("teststand"))
PREFIX = "TSS:"
SPEED = 10.0  # RDW 50 V/s of simulated time: 500 V down in 1 s
CLIENT = Path(__file__).with_name("re_client.py")
HEARTBEAT_TIMEOUT = 3.0  # s (the profile's stand file)


def _free_port() -> int:
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


# Loopback-only Channel Access, shared with tests/ioc when both run in one session.
_PORT, _REPEATER = str(_free_port()), str(_free_port())
for key, value in {
    "EPICS_CA_AUTO_ADDR_LIST": "NO",
    "EPICS_CA_ADDR_LIST": "127.0.0.1",
    "EPICS_CA_SERVER_PORT": _PORT,
    "EPICS_CA_REPEATER_PORT": _REPEATER,
    "EPICS_CAS_INTF_ADDR_LIST": "127.0.0.1",
    "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO",
    "EPICS_CAS_BEACON_ADDR_LIST": "127.0.0.1",
    "EPICS_CAS_BEACON_PORT": _REPEATER,
}.items():
    os.environ.setdefault(key, value)


class Served:
    """The simulators (here) and the IOC serving them (a process) under PREFIX."""

    def __init__(self, tmp: Path) -> None:
        data = safety_stand_dict(SPEED, heartbeat_timeout=HEARTBEAT_TIMEOUT)
        self.sims: SimStand
        self.sims, urls = start_simulated_stand(load_stand(data), transport="tcp")
        data["sim"] = False
        for name, url in urls.items():
            data["instruments"][name]["url"] = url
        self.file = tmp / "ioc.yaml"
        self.file.write_text(yaml.safe_dump(data))
        client = dict(data, server={"prefix": PREFIX, "connect_timeout": 5.0})
        self.client_file = tmp / "client.yaml"
        self.client_file.write_text(yaml.safe_dump(client))
        self.log = tmp / "ioc.log"
        command = [TESTSTAND, "ioc", str(self.file), "--prefix", PREFIX]
        command += ["--interfaces", "127.0.0.1", "--poll", "0.1"]
        with self.log.open("w") as log:
            self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line.startswith("serving"), self.log.read_text()[-3000:]
        from caproto.threading.client import Context

        self.context = Context()
        names = ["STATE", "STATE:REASON", "STATE:CMD", "CONTROL:TAKEOVER", "CONTROL:RELEASE"]
        names += ["SLOT1:MSG", "SLOT1:BIAS_SETPOINT"]
        self.pvs = dict(zip(names, self.context.get_pvs(*[PREFIX + n for n in names]), strict=True))
        for pv in self.pvs.values():
            pv.wait_for_connection(timeout=10)

    def get(self, name: str) -> str:
        from caproto import ChannelType

        if name == "STATE":
            return str(self.pvs[name].read(data_type=ChannelType.STRING).data[0].decode())
        return bytes(self.pvs[name].read().data).rstrip(b"\0").decode()

    def put(self, name: str, text: str) -> None:
        self.pvs[name].write(text.encode() + b"\0", wait=True, timeout=10)

    def reset(self) -> None:
        """Back to INIT: control taken here, the stand reset once its causes cleared."""
        self.put("CONTROL:TAKEOVER", "pid=test: cleanup after a test")
        if self.get("STATE") in ("SAFE", "ERROR"):
            wait_until(lambda: self.attempt("STATE:CMD", "RESET cleanup"), 30, "reset accepted")
        self.put("CONTROL:RELEASE", "test")

    def attempt(self, name: str, text: str) -> bool:
        """A put that the IOC may refuse (until the dead client's control is released, until
        the causes have cleared)."""
        try:
            self.put(name, text)
        except Exception:
            time.sleep(0.2)
            return False
        return True

    def stop(self) -> None:
        self.context.disconnect()
        self.process.send_signal(signal.SIGINT)
        self.process.wait(30)
        self.sims.stop()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    repeater = subprocess.Popen(  # libca and the IOC's beacons want one on the repeater port
        [str(Path(sys.executable).with_name("caproto-repeater")), "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    started = Served(tmp_path_factory.mktemp("ioc-safety"))
    yield started
    started.stop()
    repeater.terminate()
    repeater.wait(10)


def start_client(served: Served, *mode: str) -> subprocess.Popen[str]:
    log = served.file.with_name("client.log").open("a")
    process = subprocess.Popen(
        [sys.executable, str(CLIENT), str(served.client_file), PREFIX, *mode],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith("scanning"), served.file.with_name("client.log").read_text()[-3000:]
    return process


def check_safe_after(
    served: Served, history: History, fault_time: float, why: str, detection: float = 0.0
) -> Any:
    """Every channel below 2 V within V/RDW + 5 s of the fault (plus `detection`, the time the
    fault takes to be a fault: a heartbeat's timeout), LV off after it, SAFE with the reason;
    returns the samples."""
    peak = max(s.hv_max for s in history.samples)
    floor = peak / (50.0 * SPEED)
    budget = floor + 5.0 + detection - (time.monotonic() - fault_time)
    wait_until(lambda: history.sample().hv_max < 2.0, budget, "every channel below 2 V")
    wait_until(lambda: not history.sample().lv_on, 5.0, "LV off")
    samples = history.stop()
    assert all(s.hv_max < 2.0 for s in samples if not s.lv_on and s.time > fault_time)
    assert served.get("STATE") == "SAFE"
    assert why in served.get("STATE:REASON")
    return samples


@pytest.mark.parametrize(
    ("fault", "why", "detection"),
    [
        (signal.SIGKILL, "its Channel Access connection closed (process killed?)", 0.0),
        (signal.SIGSTOP, "sent no heartbeat", HEARTBEAT_TIMEOUT),
    ],
)
def test_a_runengine_killed_or_stopped_at_500_volts(
    served: Served, fault: signal.Signals, why: str, detection: float
) -> None:
    client = start_client(served)
    history = History(served.sims)
    try:
        wait_until(lambda: history.sample().hv_max > 495, 90, "500 V reached")
        assert served.get("STATE") == "RUN"
        fault_time = time.monotonic()
        client.send_signal(fault)
        check_safe_after(served, history, fault_time, why, detection)
    finally:
        client.kill()
        client.wait(10)
        served.reset()


def test_re_halt_during_a_ramp(served: Served) -> None:
    client = start_client(served, "halt")
    history = History(served.sims)
    try:
        assert client.stdout is not None
        while not client.stdout.readline().startswith("halted"):  # bluesky prints "Halting…"
            pass
        check_safe_after(served, history, time.monotonic(), "went halting with the stand in RUN")
        assert client.poll() is None  # alive, heartbeat going: the halt alone was seen
    finally:
        client.kill()
        client.wait(10)
        served.reset()


def test_hv_put_outside_run_is_refused(served: Served) -> None:
    served.put("CONTROL:TAKEOVER", "pid=test")
    try:
        served.pvs["SLOT1:BIAS_SETPOINT"].write([100.0], wait=False)
        wait_until(lambda: "only in RUN" in served.get("SLOT1:MSG"), 10, "the refusal's reason")
        assert served.sims["hv"].instrument.snapshot()["channels"][0]["vset"] == 0  # type: ignore[attr-defined]
    finally:
        served.put("CONTROL:RELEASE", "test")
