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
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil  # type: ignore[import-untyped]

from teststand.app.pids import process_running, start_time
from teststand.collect.config import CollectorConfig
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
    port: int | None = None  # its EPICS_CA_SERVER_PORT when one was given

    @property
    def running(self) -> bool:
        return process_running(self.pid, self.started)


def collector_arguments(
    config: CollectorConfig, *, idle: bool = False, interfaces: Sequence[str] = ("0.0.0.0",)
) -> list[str]:
    """`teststand collector serve` arguments that serve `config`."""
    arguments = [config.name, "--prefix", config.prefix]
    for pv in config.pvs:
        arguments += ["--pv", pv]
    options: dict[str, object] = {"period": config.period, "length": config.length}
    options |= {"publish": config.publish, "tiled": config.tiled, "api-key-env": config.api_key_env}
    for option, value in options.items():
        if value is not None:
            arguments += [f"--{option}", str(value)]
    return [*arguments, *(["--idle"] if idle else []), "--interfaces", *interfaces]


def processing_arguments(
    kind: str,
    prefix: str,
    inputs: Mapping[str, str],
    options: Mapping[str, float],
    interfaces: Sequence[str] = ("0.0.0.0",),
) -> list[str]:
    """`teststand processing serve` arguments: KIND with its inputs bound and its options."""
    arguments = [kind, "--prefix", prefix]
    for name, pv in inputs.items():
        arguments += ["--input", f"{name}={pv}"]
    for name, value in options.items():
        arguments += ["--option", f"{name}={value}"]
    return [*arguments, "--interfaces", *interfaces]


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


def check_unused(name: str, prefix: str) -> None:
    """Refuse a name or a prefix that a running collector or processing device has."""
    for entry in entries():
        if entry.running and (entry.name == name or entry.prefix == prefix):
            raise CollectorError(
                f"{entry.kind} {entry.name} (pid {entry.pid}) already serves {entry.prefix}: "
                f"stop it first (`teststand {entry.kind} stop {entry.name}`) or pick another "
                "name and prefix"
            )


def start(
    kind: str,
    name: str,
    prefix: str,
    arguments: list[str],
    env: Mapping[str, str] | None = None,
    port: int | None = None,
) -> Entry:
    """Start `teststand KIND serve ARGUMENTS…` (serving `prefix`) in its own process, with
    `env` added to this process's environment (and CA server port `port` when given)."""
    if kind not in KINDS:
        raise CollectorError(f"unknown kind {kind!r}: one of {', '.join(KINDS)}")
    path = _file(name)
    check_unused(name, prefix)
    path.parent.mkdir(parents=True, exist_ok=True)
    log = path.with_suffix(".log")
    command = [sys.executable, "-m", "teststand.app.cli", kind, "serve", *arguments]
    served = {"EPICS_CA_SERVER_PORT": str(port)} if port is not None else {}
    with log.open("w") as output:
        process = subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {}), **served},
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
        port,
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
