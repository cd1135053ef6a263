"""Shared fixtures: simulators served over real sockets and ptys, and a raw line client."""

from __future__ import annotations

import faulthandler
import os
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from bluesky import RunEngine
from helpers import CA
from hypothesis import HealthCheck, settings

from teststand.sim.runner import RunningSim, start_simulator

# The fuzz tests check what parsers accept, not how fast: on a loaded machine Hypothesis's
# 200 ms deadline and its too-slow health check fail them for reasons unrelated to the parsers.
settings.register_profile("teststand", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("teststand")
# Before libca (aioca) or caproto make a context: they read these settings once per process.
os.environ.update(CA.environment())


def _fresh_dask_pools() -> None:
    """`make mutate` (mutmut) runs each mutant's tests in a fork of this process. Threads do not
    survive a fork: dask's thread pool, made before it by a Tiled table read, would never run a
    task in the child, so every later read hung until the test's timeout and the mutant counted
    as killed. The child makes its own pools instead."""
    threaded = sys.modules.get("dask.threaded")
    if threaded is not None:
        threaded.default_pool = None
        threaded.pools.clear()


os.register_at_fork(after_in_child=_fresh_dask_pools)


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> bool | None:
    """pytest-timeout's signal method with the C-level faulthandler's stack dump. Its own dump
    (`sys._current_frames`) can deadlock on Python 3.11 when a garbage collection starts within
    it (CPython gh-106883): a test that timed out then hung the whole suite instead of failing."""
    if settings.method != "signal" or threading.current_thread() is not threading.main_thread():
        return None

    def fail(signum: int, frame: Any) -> None:
        faulthandler.dump_traceback(all_threads=True)  # into the test's captured stderr
        pytest.fail(f"Timeout (>{settings.timeout:.1f}s) from pytest-timeout.")

    def cancel() -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)

    item.cancel_timeout = cancel  # type: ignore[attr-defined]  # pytest-timeout calls it
    signal.signal(signal.SIGALRM, fail)
    signal.setitimer(signal.ITIMER_REAL, settings.timeout)
    return True


@pytest.fixture(scope="session")
def ca_repeater() -> Iterator[None]:
    """A CA repeater on the session's repeater port, for the tests that start IOCs."""
    with CA.repeater():
        yield


# Under pytest-xdist every worker runs simulators of its own: a pty number freed in one worker and
# reused by another must not look like a port that the first still holds. One lock folder per worker
# (inherited by the processes its tests start).
if _worker := os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["TESTSTAND_LOCK_DIR"] = tempfile.mkdtemp(prefix=f"teststand-locks-{_worker}-")


class RawClient:
    """A plain blocking socket client that sends raw command lines, independent of the transport."""

    def __init__(self, sim: RunningSim, terminator: bytes = b"\r\n") -> None:
        self.sim = sim
        host, port = sim.address.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=2)
        self.terminator = terminator
        self._buffer = b""

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode("ascii") + self.terminator)

    def read_line(self, timeout: float = 2.0) -> bytes | None:
        """One reply line with its terminator stripped, or None when nothing comes in `timeout`."""
        self.sock.settimeout(timeout)
        while b"\n" not in self._buffer:
            try:
                chunk = self.sock.recv(4096)
            except TimeoutError:
                return None
            if not chunk:
                return None
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.rstrip(b"\r")

    def ask(self, line: str, timeout: float = 2.0) -> str | None:
        self.send(line)
        reply = self.read_line(timeout)
        return None if reply is None else reply.decode("ascii")

    def errors(self) -> list[str]:
        """Read the SCPI error queue (`:SYST:ERR?`) until it is empty; the errors in order."""
        errors: list[str] = []
        while (reply := self.ask(":SYST:ERR?")) != '0,"No error"':
            errors.append(str(reply))
            assert len(errors) < 20, errors
        return errors

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw_sim() -> Iterator[Callable[..., RawClient]]:
    """`raw_sim(kind, **options)` serves a simulator over TCP and returns a raw client to it."""
    started: list[tuple[RunningSim, RawClient]] = []

    def start(kind: str, terminator: bytes = b"\r\n", **options: Any) -> RawClient:
        sim = start_simulator(kind, transport="tcp", **options)
        client = RawClient(sim, terminator)
        started.append((sim, client))
        return client

    yield start
    for sim, client in started:
        client.close()
        sim.stop()


@pytest.fixture
def RE() -> RunEngine:
    """A RunEngine, made before any device is connected: devices bind to its event loop."""
    return RunEngine(call_returns_result=True)
