"""The monitor's journal: batches of line protocol the database has not taken yet, on disk.

One file per batch, `<sequence>-<points>.lp`, written to a temporary name and renamed (a crash
leaves whole batches only). Batches go out oldest first; a batch is deleted once the database
took it. The journal has a size bound: a warning from a fraction of it, `JournalFull` at it.
"""

from __future__ import annotations

import errno
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from teststand.errors import TeststandError

log = logging.getLogger("teststand.monitor")


class JournalError(TeststandError, OSError):
    """The journal cannot take a batch (disk full, bound reached, not writable)."""


@dataclass(frozen=True)
class Backlog:
    batches: int
    points: int
    bytes: int


def _points(path: Path) -> int:
    return int(path.stem.rpartition("-")[2] or 0)


class Journal:
    def __init__(self, directory: Path, max_bytes: int, warn_fraction: float = 0.8) -> None:
        self.directory = directory.expanduser()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise JournalError(
                f"cannot create the monitor journal {self.directory}: {exc.strerror}; give a "
                "writable monitoring.journal_dir"
            ) from None
        self.max_bytes = max_bytes
        self.warn_bytes = int(max_bytes * warn_fraction)
        self._warned = False
        files = self.files()
        self._next = int(files[-1].stem.partition("-")[0]) + 1 if files else 0
        self._bytes = sum(path.stat().st_size for path in files)
        self._points = sum(_points(path) for path in files)

    def files(self) -> list[Path]:
        return sorted(self.directory.glob("*.lp"))

    def backlog(self) -> Backlog:
        return Backlog(len(self.files()), self._points, self._bytes)

    def __bool__(self) -> bool:
        return self._points > 0

    def append(self, lines: list[str]) -> None:
        """Store a batch after every earlier one, or raise `JournalError` (the batch is kept by
        the caller then)."""
        data = ("\n".join(lines) + "\n").encode()
        if self._bytes + len(data) > self.max_bytes:
            raise JournalError(
                f"the monitor journal {self.directory} is full ({self._bytes} of "
                f"{self.max_bytes} bytes, monitoring.journal_max_bytes): the database has not "
                "answered for long; bring it back or raise the bound. Points are held in memory."
            )
        path = self.directory / f"{self._next:020d}-{len(lines)}.lp"
        partial = path.with_suffix(".part")
        try:
            with partial.open("wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            partial.rename(path)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
            why = "the disk is full" if full else exc.strerror
            raise JournalError(
                f"cannot write the monitor journal {self.directory}: {why}; free space there or "
                "move monitoring.journal_dir. Points are held in memory."
            ) from None
        self._next += 1
        self._bytes += len(data)
        self._points += len(lines)
        if self._bytes >= self.warn_bytes and not self._warned:
            self._warned = True
            log.warning(
                "the monitor journal %s holds %d of %d bytes: the database is not taking points",
                self.directory,
                self._bytes,
                self.max_bytes,
            )

    def oldest(self) -> tuple[Path, list[str]] | None:
        files = self.files()
        if not files:
            return None
        return files[0], files[0].read_text().splitlines()

    def remove(self, path: Path) -> None:
        size, points = path.stat().st_size, _points(path)
        path.unlink()
        self._bytes -= size
        self._points -= points
        if self._bytes < self.warn_bytes:
            self._warned = False
