"""The simulated stand served by `teststand ioc` (a real process, its watchdog inside) on
loopback Channel Access; the simulators run in the test's process, so their history shows what
the instruments really did."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from helpers import CA
from safety_helpers import safety_stand_dict, wait_until

from teststand.app.ioc.process import IocProcess
from teststand.config import load_stand
from teststand.sim.stand import SimStand
from teststand.stand.simulation import start_simulated_stand

TESTSTAND = str(Path(sys.executable).with_name("teststand"))
PREFIX = "TSS:"
SPEED = 10.0  # RDW 50 V/s of simulated time: 500 V down in 1 s
CLIENT = Path(__file__).with_name("re_client.py")
HEARTBEAT_TIMEOUT = 10.0  # s: a loaded machine stalls a RunEngine loop for seconds (run start)


class Served:
    """The simulators (here) and the IOC serving them (a process) under PREFIX."""

    def __init__(self, tmp: Path) -> None:
        # Timeouts for a loaded machine: the simulators share this process with the tests.
        # Humid lab air reaches the box within a second once the dry air stops, and dry air
        # dries it as fast (humidity tests).
        humid = {"coldbox": {"leak_time_constant": 5.0, "flush_time_constant": 5.0}}
        data = safety_stand_dict(SPEED, humid, heartbeat_timeout=HEARTBEAT_TIMEOUT)
        data["storage"] = {"data_dir": str(tmp / "data")}
        self.sims: SimStand
        config = load_stand(data)
        self.limits = config.require_interlocks()
        self.sims, urls = start_simulated_stand(config, transport="tcp")
        data["sim"] = False
        for name, url in urls.items():
            data["instruments"][name]["url"] = url
        self.file = tmp / "ioc.yaml"
        self.file.write_text(yaml.safe_dump(data))
        # a loaded machine takes seconds to connect a client's hundred PVs
        client = dict(data, server={"prefix": PREFIX, "connect_timeout": 30.0})
        self.client_file = tmp / "client.yaml"
        self.client_file.write_text(yaml.safe_dump(client))
        # A server port of its own from the session's CA (another IOC may serve on another).
        self.ioc = IocProcess(self.file, PREFIX, poll=0.1, ca=CA, log=tmp / "ioc.log").start()
        from caproto.threading.client import Context

        self.context = Context()
        names = ["STATE", "STATE:REASON", "STATE:CMD", "CONTROL:TAKEOVER", "CONTROL:RELEASE"]
        names += ["SLOT1:MSG", "SLOT1:BIAS_SETPOINT", "CONTROL:OWNER"]
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
            wait_until(lambda: self.attempt("STATE:CMD", "RESET cleanup"), 90, "reset accepted")
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
        self.ioc.close()
        self.sims.stop()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, ca_repeater: None) -> Iterator[Served]:
    """The IOC and its simulators, for the tests of one module."""
    started = Served(tmp_path_factory.mktemp("ioc-safety"))
    yield started
    started.stop()
