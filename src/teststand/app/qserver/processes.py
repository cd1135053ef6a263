"""Background processes of the queue server, supervised with psutil.

Each runs in its own process group (it outlives the command that started it); a component is
stopped by signalling the group and waiting until no member of it runs.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sysconfig
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil  # type: ignore[import-untyped]

from teststand.app.qserver.errors import QserverConfigError, QserverError, StartFailed
from teststand.app.qserver.redis_db import RedisAddress, shutdown_redis


@dataclass(frozen=True)
class Component:
    """One process of the queue server. `pid` is None for a Redis that is not ours."""

    name: str
    address: str
    pid: int | None
    #: A word of its command line, to tell it from a process that reuses the pid.
    marker: str = ""
    log: str = ""

    @property
    def alive(self) -> bool:
        return self.pid is not None and _alive(self.pid, self.marker)


#: Processes started here, kept so that they are reaped (not left as zombies) once they end.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def spawn(command: list[str], log: Path, *, cwd: Path, env: dict[str, str]) -> int:
    """Start `command` in its own session (its own process group), output appended to `log`."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,  # its own process group; it outlives this command
        )
    _CHILDREN[process.pid] = process
    return process.pid


def _reap(pid: int) -> None:
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        del _CHILDREN[pid]


def _running(process: psutil.Process) -> bool:
    try:
        return bool(process.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of a process group."""
    members = []
    for process in psutil.process_iter():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if os.getpgid(process.pid) == pgid and _running(process):
                members.append(process.pid)
    return members


def _alive(pid: int, marker: str) -> bool:
    """Whether our process `pid` (or, once it ended, a process of its group) still runs."""
    _reap(pid)
    if pid in _CHILDREN:  # started by this process and not ended: no need to check who it is
        return True
    try:
        process = psutil.Process(pid)
        return _running(process) and marker in " ".join(process.cmdline())
    except psutil.NoSuchProcess:
        # The leader ended; a pid that leads a live group cannot be reused, so members are ours.
        return bool(group_members(pid))
    except psutil.AccessDenied:
        return False


def wait_exit(pid: int, timeout: float) -> bool:
    """True once process `pid` has ended (at most `timeout` s). Our own children are reaped;
    another process is waited for on a pidfd, never reaped (its parent may want its status)."""
    child = _CHILDREN.get(pid)
    if child is not None:
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        _reap(pid)
        return True
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
    finally:
        os.close(fd)
    return bool(ready)


def signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def stop_component(component: Component, timeout: float = 15.0) -> None:
    """Stop one component: Redis by SHUTDOWN (it saves its data), the rest by SIGTERM to the
    process group; SIGKILL after `timeout` s. Nothing for a Redis that is not ours."""
    if component.pid is None or not component.alive:
        return
    if component.name == "redis":
        shutdown_redis(RedisAddress.parse(component.address))
        if wait_exit(component.pid, 5.0) and not group_members(component.pid):
            return
    signal_group(component.pid, signal.SIGTERM)
    wait_gone(component, timeout)


def wait_gone(component: Component, timeout: float) -> None:
    """Wait for the process and its group to end; SIGKILL the group after `timeout` s."""
    assert component.pid is not None
    deadline = time.monotonic() + timeout
    wait_exit(component.pid, timeout)
    killed = False
    while members := group_members(component.pid):
        if time.monotonic() > deadline:
            if killed:
                raise QserverError(
                    f"{component.name}: processes {members} survive SIGKILL; see {component.log}"
                )
            signal_group(component.pid, signal.SIGKILL)
            killed, deadline = True, time.monotonic() + 5.0
        wait_exit(members[0], 0.1)


def _tail(log: Path, lines: int = 5) -> str:
    try:
        text = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


def wait_ready(component: Component, probe: Callable[[], bool], timeout: float) -> None:
    """Probe until it answers; typed error if the process ends or the time runs out."""
    assert component.pid is not None
    deadline = time.monotonic() + timeout
    while not probe():
        if wait_exit(component.pid, 0.1):
            raise StartFailed(
                f"{component.name} exited while starting; see {component.log}:\n"
                f"{_tail(Path(component.log))}"
            )
        if time.monotonic() > deadline:
            raise StartFailed(
                f"{component.name} did not answer within {timeout:.0f} s; see {component.log}"
            )


def script(name: str) -> str:
    """The path of a console script installed next to this Python."""
    path = Path(sysconfig.get_path("scripts")) / name
    if not path.exists():
        raise QserverConfigError(f"{name} is not installed in {path.parent}: install the package")
    return str(path)
