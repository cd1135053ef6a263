"""The factory: each collector or processing device runs in a process of its own.

`start()` runs `teststand collector serve …` (or `processing serve …`) in a new session, waits
for its `serving` line and records it in the registry (one JSON file per name under
`$TESTSTAND_COLLECTOR_DIR`, default `$XDG_STATE_HOME/teststand/collectors`); `entries()` lists
them with whether each still runs; `stop()` ends one with SIGTERM.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil  # type: ignore[import-untyped]

from teststand.app.pids import process_running, start_time
from teststand.collect.errors import CollectorError

KINDS = ("collector", "processing")
START_TIMEOUT = 60.0


def registry_dir() -> Path:
    explicit = os.environ.get("TESTSTAND_COLLECTOR_DIR")
    if explicit:
        return Path(explicit)
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "teststand" / "collectors"


@dataclass(frozen=True)
class Entry:
    """One started process."""

    name: str
    kind: str
    prefix: str
    pid: int
    command: list[str]
    log: str
    started: float

    @property
    def running(self) -> bool:
        return process_running(self.pid, self.started)


def _file(name: str) -> Path:
    if not name or "/" in name or name.startswith("."):
        raise CollectorError(f"{name!r} is not a collector name: use letters, digits, - and _")
    return registry_dir() / f"{name}.json"


def entries() -> list[Entry]:
    """Every registered process, running or not."""
    found = []
    for path in sorted(registry_dir().glob("*.json")):
        try:
            found.append(Entry(**json.loads(path.read_text())))
        except (OSError, ValueError, TypeError):
            continue
    return found


def start(
    kind: str,
    name: str,
    prefix: str,
    arguments: list[str],
    env: Mapping[str, str] | None = None,
) -> Entry:
    """Start `teststand KIND serve ARGUMENTS…` (serving `prefix`) in its own process, with
    `env` added to this process's environment."""
    if kind not in KINDS:
        raise CollectorError(f"unknown kind {kind!r}: one of {', '.join(KINDS)}")
    path = _file(name)
    for entry in entries():
        if entry.running and (entry.name == name or entry.prefix == prefix):
            raise CollectorError(
                f"{entry.kind} {entry.name} (pid {entry.pid}) already serves {entry.prefix}: "
                f"stop it first (`teststand {entry.kind} stop {entry.name}`) or pick another "
                "name and prefix"
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    log = path.with_suffix(".log")
    command = [sys.executable, "-m", "teststand.app.cli", kind, "serve", *arguments]
    with log.open("w") as output:
        process = subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    deadline = time.monotonic() + START_TIMEOUT
    while "serving " not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            if process.poll() is None:
                process.terminate()
            raise CollectorError(f"{kind} {name} did not start:\n{log.read_text()[-2000:]}")
        time.sleep(0.1)
    entry = Entry(
        name,
        kind,
        prefix,
        process.pid,
        command,
        str(log),
        start_time(process.pid),
    )
    path.write_text(json.dumps(asdict(entry)))
    return entry


def stop(name: str, timeout: float = 20.0) -> Entry:
    """End the process registered as `name` (SIGTERM) and forget it."""
    path = _file(name)
    if not path.exists():
        known = ", ".join(e.name for e in entries()) or "none"
        raise CollectorError(f"no collector or processing device named {name!r} (known: {known})")
    entry = Entry(**json.loads(path.read_text()))
    if entry.running:
        process = psutil.Process(entry.pid)
        process.terminate()
        try:
            process.wait(timeout)
        except psutil.TimeoutExpired:
            process.kill()
    path.unlink()
    return entry
