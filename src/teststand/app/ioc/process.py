"""`IocProcess`: `teststand ioc` as a child process (the demo, the benchmarks and the tests);
`SimulatorProcess`: `teststand sim serve-stand --tcp`, the simulators it serves, with their console.

`local_ca_environment()` is the loopback-only Channel Access set-up of the demo, so that
nothing leaves the machine and no other IOC on the network is seen. `LoopbackCA` is the same on
ports reserved for it (tests, benchmarks; `reserve_ca_port`): a repeater port and a few server
ports, each IOC on one of them and every one in `EPICS_CA_ADDR_LIST`. libca reads these
settings once per process, when its first context is made, and a unicast search reaches only
one of two servers bound to one port: so all the ports a process will ever search are in its
list from the start, and no two IOCs of ours share one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from teststand.errors import TeststandError

LOOPBACK = "127.0.0.1"


def local_ca_environment(server: bool = False) -> dict[str, str]:
    """EPICS settings on loopback only, a client's and, with `server`, an IOC's too (the
    caller's own EPICS_* win). A client gets no EPICS_CAS_*: libca reads the beacon list too, and
    warned of its loopback entry as a duplicate (`Duplicate EPICS CA Address list entry`)."""
    wanted = {"EPICS_CA_AUTO_ADDR_LIST": "NO", "EPICS_CA_ADDR_LIST": LOOPBACK}
    if server:
        wanted |= {
            "EPICS_CAS_INTF_ADDR_LIST": LOOPBACK,
            "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO",
            "EPICS_CAS_BEACON_ADDR_LIST": LOOPBACK,
        }
    return {key: os.environ.get(key, value) for key, value in wanted.items()}


#: Lock files of the CA ports reserved by this machine's processes (`reserve_ca_port`).
PORT_LOCKS = Path(tempfile.gettempdir()) / "teststand-ca-ports"
#: Reserved ports are picked among this many below the kernel's ephemeral range.
RESERVED_SPAN = 10_000
_reserved: dict[int, int] = {}  # port -> descriptor of its locked file, held for the process's life


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    """Whether nothing holds `port` on loopback, for TCP nor for UDP (CA uses both)."""
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind((LOOPBACK, port))
            except OSError:
                return False
    return True


def reserve_ca_port() -> int:
    """A loopback port for a CA server or repeater that no other process will take while this one
    lives: below the kernel's ephemeral range (so no client socket is ever bound to it, as happens
    to a free port of that range), free for TCP and UDP, and locked (a file lock in `PORT_LOCKS`,
    released when this process ends) so that no other process of ours reserves it. A unicast
    search reaches only one of two sockets bound to a port, so a shared port loses searches."""
    PORT_LOCKS.mkdir(exist_ok=True)
    with contextlib.suppress(PermissionError):  # every user's processes lock ports there
        PORT_LOCKS.chmod(0o1777)  # (sticky, as /tmp); only its owner may change it
    high = _ephemeral_low()
    low = max(1024, high - RESERVED_SPAN)
    start = random.randrange(low, high)
    for offset in range(high - low):
        port = low + (start - low + offset) % (high - low)
        if port in _reserved:
            continue
        try:  # read-only: flock needs no write access, so another user's lock file serves too
            descriptor = os.open(PORT_LOCKS / str(port), os.O_RDONLY | os.O_CREAT, 0o644)
        except OSError:
            continue
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(descriptor)
            continue
        if _bindable(port):
            _reserved[port] = descriptor
            return port
        os.close(descriptor)
    raise TeststandError(
        f"no loopback port in {low}-{high - 1} is free for a CA server: stop some IOCs"
    )


def terminate(process: subprocess.Popen[Any], timeout: float) -> None:
    """SIGTERM `process`, SIGKILL when it has not exited after `timeout` s; wait for it."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


@dataclass
class LoopbackCA:
    """Loopback Channel Access on free ports: `environment()` for this process and its client
    children (set it before the first CA context), `lease()` a server port for an IOC."""

    repeater_port: int
    server_ports: tuple[int, ...]
    leased: set[int] = field(default_factory=set)

    @classmethod
    def allocate(cls, servers: int = 1) -> LoopbackCA:
        return cls(reserve_ca_port(), tuple(reserve_ca_port() for _ in range(servers)))

    def environment(self) -> dict[str, str]:
        """Client settings: every server port searched, beacons to the repeater."""
        repeater = str(self.repeater_port)
        return {
            "EPICS_CA_AUTO_ADDR_LIST": "NO",
            "EPICS_CA_ADDR_LIST": " ".join(f"{LOOPBACK}:{port}" for port in self.server_ports),
            "EPICS_CA_SERVER_PORT": str(self.server_ports[0]),
            "EPICS_CA_REPEATER_PORT": repeater,
            "EPICS_CAS_INTF_ADDR_LIST": LOOPBACK,
            "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO",
            "EPICS_CAS_BEACON_ADDR_LIST": LOOPBACK,
            "EPICS_CAS_BEACON_PORT": repeater,
        }

    def server_environment(self, port: int) -> dict[str, str]:
        """An IOC's settings: the client ones, serving on `port`."""
        return {**self.environment(), "EPICS_CA_SERVER_PORT": str(port)}

    def lease(self) -> int:
        """A server port no IOC of ours holds; `release()` it when that IOC is done."""
        for port in self.server_ports:
            if port not in self.leased:
                self.leased.add(port)
                return port
        raise TeststandError(
            f"all {len(self.server_ports)} server ports are in use by IOCs; allocate more "
            "(LoopbackCA.allocate(servers=N))"
        )

    def release(self, port: int) -> None:
        self.leased.discard(port)

    @contextmanager
    def repeater(self) -> Iterator[None]:
        """A CA repeater on the repeater port (libca registers with one) while the block runs."""
        process = subprocess.Popen(
            [str(Path(sys.executable).with_name("caproto-repeater")), "-q"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **self.environment()},
        )
        try:
            yield
        finally:
            process.terminate()
            process.wait(10)


class IocProcess:
    """Start `teststand ioc STAND --prefix P` and wait until it serves; `stop()` ends it (the IOC
    then writes VSET 0 to every HV channel and releases the instruments), `start()` again
    restarts it on the same port. With `ca`, it serves on a port leased from it until `close()`.
    """

    def __init__(
        self,
        stand_file: Path,
        prefix: str,
        *,
        poll: float = 0.2,
        args: Sequence[str] = (),
        ca: LoopbackCA | None = None,
        env: Mapping[str, str] | None = None,
        log: Path | None = None,
    ) -> None:
        self.stand_file = stand_file
        self.prefix = prefix
        self.poll = poll
        self.args = list(args)
        self.ca = ca
        self.port = ca.lease() if ca is not None else None
        served = ca.server_environment(self.port) if ca is not None and self.port else {}
        self.env = {**os.environ, **served, **(env or {})}
        self.log = log or stand_file.with_suffix(".ioc.log")
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> IocProcess:
        command = [sys.executable, "-m", "teststand.app.cli", "ioc", str(self.stand_file)]
        command += ["--prefix", self.prefix, "--interfaces", LOOPBACK, "--poll", str(self.poll)]
        command += self.args
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
        """SIGTERM (the IOC's safe exit), SIGKILL when it has not exited after `timeout` s."""
        if self.process is not None:
            terminate(self.process, timeout)
        self.process = None

    def close(self) -> None:
        """Stop it and give its port back."""
        self.stop()
        if self.ca is not None and self.port is not None:
            self.ca.release(self.port)
            self.port = None

    def __enter__(self) -> IocProcess:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class SimulatorProcess:
    """`teststand sim serve-stand FILE --tcp`: every instrument of the stand file served by a
    simulator on a loopback TCP port (`urls`: instrument name → URL). `ask(line)` sends a
    console line (`hv status`, `chiller call inject_garbled`, `coldbox faults drop=1`) and
    returns its reply; `stop()` ends the process (SIGTERM, SIGKILL after `timeout`)."""

    def __init__(
        self,
        stand_file: Path,
        *,
        env: Mapping[str, str] | None = None,
        log: Path | None = None,
        cwd: Path | None = None,
    ) -> None:
        names = yaml.safe_load(stand_file.read_text())["instruments"]
        command = [sys.executable, "-m", "teststand.app.cli", "sim", "serve-stand"]
        errors = log.open("a") if log is not None else None
        try:
            self.process = subprocess.Popen(
                [*command, str(stand_file), "--tcp"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
                env={**os.environ, **(env or {})},
                cwd=cwd,
            )
        finally:
            if errors is not None:
                errors.close()
        assert self.process.stdout is not None
        self.urls: dict[str, str] = {}
        for _ in names:
            name, url = self.process.stdout.readline().split()
            self.urls[name] = url
        self.lock = threading.Lock()

    @property
    def pid(self) -> int:
        return self.process.pid

    def ask(self, line: str) -> str:
        """Send one console line; the simulators' one-line reply."""
        assert self.process.stdin is not None and self.process.stdout is not None
        with self.lock:
            self.process.stdin.write(line + "\n")
            self.process.stdin.flush()
            return self.process.stdout.readline().strip()

    def status(self, name: str) -> Any:
        """`NAME status`, decoded (the simulator's state as JSON)."""
        return json.loads(self.ask(f"{name} status"))

    def vmon(self, name: str = "hv") -> list[float]:
        """Every channel's |VMON| of the HV supply `name`."""
        return [abs(channel["vmon"]) for channel in self.status(name)["channels"]]

    def stop(self, timeout: float = 20.0) -> None:
        terminate(self.process, timeout)
