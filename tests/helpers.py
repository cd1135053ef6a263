"""Helpers shared by the tests (plain functions; fixtures live in conftest.py)."""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from bluesky import RunEngine

from teststand.app.ioc.process import LoopbackCA

#: The session's Channel Access: loopback only, on free ports; tests/conftest.py sets it in the
#: environment before any CA context exists. Every IOC a test starts serves on a port leased
#: from it (`IocProcess(..., ca=CA)`), and every client searches all of them.
CA = LoopbackCA.allocate(servers=12)


def run(RE: RunEngine, make: Callable[[], Awaitable[Any]], timeout: float = 60) -> Any:
    """Await `make()` on the RunEngine's event loop, where the devices live."""

    async def call() -> Any:
        return await make()

    return asyncio.run_coroutine_threadsafe(call(), RE.loop).result(timeout)


STAND_FILE = Path(__file__).parents[1] / "profile_collection" / "stand.yaml"


def stand_dict(speed: float = 200.0, **changes: Any) -> dict[str, Any]:
    """The profile's simulated stand file as a dict, sped up, with top-level `changes` applied."""
    data: dict[str, Any] = yaml.safe_load(STAND_FILE.read_text())
    data.update(speed=speed, **changes)
    return data


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def postgres_bin() -> Path | None:
    """The folder of PostgreSQL's initdb and pg_ctl, if they are installed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@contextmanager
def postgres_cluster(bindir: Path, root: Path | None = None) -> Iterator[str]:
    """A real PostgreSQL server (data in `root`, default a temporary directory), run as an
    unprivileged user; yields its URI (database `postgres`, user `postgres`, no password)."""
    temporary = root is None
    root = Path(tempfile.mkdtemp(prefix="teststand-pg-")) if root is None else root
    root.mkdir(parents=True, exist_ok=True)
    prefix: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: run it as nobody
        shutil.chown(root, "nobody", "nogroup")
        prefix = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]
    port, data = free_port(), root / "data"

    def run(*args: str) -> None:
        subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=120, cwd=root)

    if not data.exists():
        run(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    run(
        str(bindir / "pg_ctl"),
        "-D",
        str(data),
        "-o",
        options,
        "-l",
        str(root / "log"),
        "-w",
        "start",
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        if temporary:
            shutil.rmtree(root, ignore_errors=True)


@contextmanager
def small_tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` (e.g. "64k") at `folder`, without root: mounted in a user and mount
    namespace of its own (`unshare -rm`, util-linux) by a holder process, reached through
    /proc/PID/root."""
    folder.mkdir()
    script = f'mount -t tmpfs -o size={size} tmpfs "{folder}" && echo mounted && exec sleep 3600'
    holder = subprocess.Popen(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stderr is not None
    if holder.stdout.readline().strip() != "mounted":
        holder.wait(10)
        raise AssertionError(
            f"cannot mount a small tmpfs in a namespace: {holder.stderr.read().strip()}; the "
            "kernel must allow unprivileged user namespaces (kernel.unprivileged_userns_clone=1)"
        )
    try:
        yield Path(f"/proc/{holder.pid}/root") / folder.relative_to("/")
    finally:
        holder.kill()
        holder.wait(10)
        holder.stdout.close()
        holder.stderr.close()
