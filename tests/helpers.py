"""Helpers shared by the tests (plain functions; fixtures live in conftest.py)."""

from __future__ import annotations

import asyncio
import glob
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from bluesky import RunEngine
from bluesky.callbacks.zmq import Publisher

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


def stand_dict(
    speed: float = 200.0, links: dict[str, dict[str, Any]] | None = None, **changes: Any
) -> dict[str, Any]:
    """The profile's simulated stand file as a dict, sped up, with `links` (transport options by
    instrument name) and top-level `changes` applied."""
    data: dict[str, Any] = yaml.safe_load(STAND_FILE.read_text())
    for name, options in (links or {}).items():
        data["instruments"][name]["options"].update(options)
    data.update(speed=speed, **changes)
    return data


@contextmanager
def ca_server_script(script: str) -> Iterator[None]:
    """`python -c script` serving on a leased port of the session's CA until the block ends;
    started when it prints `serving`."""
    port = CA.lease()
    try:
        process = subprocess.Popen(
            [sys.executable, "-c", script],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, **CA.server_environment(port)},
        )
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            assert line.startswith("serving"), f"the CA server script on port {port}: {line!r}"
            yield
        finally:
            process.kill()
            process.wait(10)
    finally:
        CA.release(port)


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


@contextmanager
def pixel_analysis(
    *options: str, out: Path
) -> Iterator[tuple[Callable[[dict[str, Any]], None], subprocess.Popen[str]]]:
    """A `bluesky-0MQ-proxy` and `teststand analysis serve --out OUT *options` behind it; yields
    (a Publisher to subscribe to the RunEngine, the analysis process). Stops both at the end."""
    ports = free_port(), free_port()
    proxy = subprocess.Popen(
        [str(Path(sys.executable).parent / "bluesky-0MQ-proxy"), *map(str, ports)]
    )
    publisher = Publisher(("127.0.0.1", ports[0]))
    processes = [proxy]
    try:
        processes.append(analysis_process(ports[1], out, *options))
        yield publisher, processes[-1]
    finally:
        for process in processes:
            process.kill()
            process.wait(10)
        publisher._socket.close(linger=0)  # unsent documents must not hold up the exit
        publisher.close()


def analysis_process(proxy_out: int, out: Path, *options: str) -> subprocess.Popen[str]:
    """`teststand analysis serve` subscribed to the proxy's outbound port, once it listens."""
    command = [sys.executable, "-m", "teststand.app.cli", "analysis", "serve"]
    command += ["--proxy", f"127.0.0.1:{proxy_out}", "--out", str(out), *options]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], 60)
    if not ready or "listening" not in process.stdout.readline():
        process.kill()
        raise AssertionError("`teststand analysis serve` did not start listening within 60 s")
    return process


def analysed(RE: RunEngine, plan: Callable[[], Any], out: Path) -> tuple[str, dict[str, Any]]:
    """Runs `plan()` until the analysis reports one (its subscription needs a moment to join)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        (uid,) = RE(plan()).run_start_uids
        for _ in range(40):
            if (out / f"{uid}.json").exists():
                return uid, json.loads((out / f"{uid}.json").read_text())
            time.sleep(0.1)
    raise AssertionError("the analysis process never reported a run")
