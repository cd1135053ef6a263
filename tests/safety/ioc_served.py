"""The simulated stand served by `teststand ioc` (a real process, its watchdog inside) on
loopback Channel Access; the simulators run in the test's process, so their history shows what
the instruments really did."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from safety_helpers import safety_stand_dict, wait_until

from teststand.config import load_stand
from teststand.sim.stand import SimStand
from teststand.stand.simulation import start_simulated_stand

TESTSTAND = str(Path(sys.executable).with_name("teststand"))
PREFIX = "TSS:"
SPEED = 10.0  # RDW 50 V/s of simulated time: 500 V down in 1 s
CLIENT = Path(__file__).with_name("re_client.py")
HEARTBEAT_TIMEOUT = 10.0  # s: a loaded machine stalls a RunEngine loop for seconds (run start)


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
        # Timeouts for a loaded machine: the simulators share this process with the tests.
        data = safety_stand_dict(SPEED, heartbeat_timeout=HEARTBEAT_TIMEOUT, link_timeout=10.0)
        data["storage"] = {"data_dir": str(tmp / "data")}
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
        # Its own server port: another IOC of the session (tests/ioc) may serve on the shared
        # one, and a unicast search reaches only one of two servers bound to a port.
        port = _free_port()
        self.env = dict(os.environ, EPICS_CA_SERVER_PORT=str(port))
        self.addresses = os.environ["EPICS_CA_ADDR_LIST"]
        os.environ["EPICS_CA_ADDR_LIST"] = f"{self.addresses} 127.0.0.1:{port}"
        self.log = tmp / "ioc.log"
        command = [TESTSTAND, "ioc", str(self.file), "--prefix", PREFIX]
        command += ["--interfaces", "127.0.0.1", "--poll", "0.1"]
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=log, text=True, env=self.env
            )
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
        os.environ["EPICS_CA_ADDR_LIST"] = self.addresses


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The IOC and its simulators, for the tests of one module."""
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
