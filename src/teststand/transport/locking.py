"""Exclusive ownership of an instrument: one owner at a time, across processes and within one.

The lock is a `flock` on a lock file keyed by the instrument (a serial device's real path, or a
TCP host:port), which records the owner's PID and command line so that a second opener is told who
holds it. `flock` belongs to the open file: it is released on close and when the owner dies, and
a second open of the same lock file in the same process conflicts too.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

from teststand.errors import InstrumentBusy


def lock_dir() -> Path:
    """`$TESTSTAND_LOCK_DIR`, else /run/lock/teststand, else a folder in the temp dir."""
    configured = os.environ.get("TESTSTAND_LOCK_DIR")
    candidates = [Path(configured)] if configured else []
    candidates += [Path("/run/lock/teststand"), Path(tempfile.gettempdir()) / "teststand-locks"]
    for candidate in candidates:
        with contextlib.suppress(OSError):
            candidate.mkdir(mode=0o1777, parents=True, exist_ok=True)
            if os.access(candidate, os.W_OK):
                return candidate
    raise OSError(f"no writable lock directory among {', '.join(map(str, candidates))}")


def own_command_line() -> str:
    try:
        return Path("/proc/self/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return " ".join(sys.argv)


class InstrumentLock:
    """An exclusive, non-blocking lock on one instrument key."""

    def __init__(self, key: str, url: str, instrument: str = "") -> None:
        self.key = key
        self.url = url
        self.instrument = instrument
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", key).strip("_")
        self.path = lock_dir() / f"{safe}.lock"
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise self._busy() from None
        record = {"pid": os.getpid(), "command": own_command_line(), "url": self.url}
        record["since"] = time.strftime("%Y-%m-%d %H:%M:%S")
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the file drops the flock

    def _busy(self) -> InstrumentBusy:
        try:
            record = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            record = {}
        pid = record.get("pid")
        return busy_error(
            self.url,
            self.instrument,
            pid if isinstance(pid, int) else None,
            str(record.get("command", "unknown")),
            str(record.get("since", "")),
        )


def busy_error(
    url: str, instrument: str, pid: int | None, command: str, since: str = ""
) -> InstrumentBusy:
    owner = "this process" if pid == os.getpid() else "another process"
    who = f"{owner} (PID {pid}: {command})" if pid else f"{owner} ({command})"
    return InstrumentBusy(
        f"already in use by {who}{' since ' + since if since else ''}",
        url=url,
        instrument=instrument,
        owner_pid=pid,
        owner_command=command,
        hint="close the other connection or program first; two programs on one port corrupt "
        "each other's replies",
    )


def processes_holding(path: str) -> list[tuple[int, str]]:
    """PIDs and command lines of the processes that have `path` open (Linux /proc scan)."""
    target = os.path.realpath(path)
    holders: list[tuple[int, str]] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd) == target:
                    raw = (entry / "cmdline").read_bytes()
                    holders.append((int(entry.name), raw.replace(b"\0", b" ").decode().strip()))
                    break
    return holders
