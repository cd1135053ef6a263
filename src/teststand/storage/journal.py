"""The local run journal: every document of a run, one JSON line each, one file per run.

A journal is written before anything goes to Tiled and deleted only once its run is verified
complete there. While a run is being written its file is held with `flock`, so replay and status
can tell a live journal from one left behind. A journal with unreadable lines is renamed to
`*.jsonl.bad` after its good lines are stored, so that a human can look at it.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import shutil
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from teststand.storage.errors import JournalError, JournalSpaceLow

log = logging.getLogger("teststand.storage.journal")

SUFFIX = ".jsonl"
BAD_SUFFIX = ".jsonl.bad"
Document = tuple[str, dict[str, Any]]


def _default(value: Any) -> Any:
    """JSON for numpy scalars and arrays (the RunEngine may hand them over)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in a journal")


def encode(name: str, doc: dict[str, Any]) -> bytes:
    return (json.dumps([name, doc], default=_default, separators=(",", ":")) + "\n").encode()


def check_space(directory: Path, min_free_bytes: int) -> int:
    """Free bytes on the journal's disk; warns (`JournalSpaceLow`) below the minimum."""
    free = shutil.disk_usage(directory).free
    if free < min_free_bytes:
        message = (
            f"only {free / 1e6:.0f} MB free for the run journal in {directory} (minimum "
            f"{min_free_bytes / 1e6:.0f} MB): free some space or move storage.journal_dir, "
            "or runs may not be journaled"
        )
        log.warning(message)
        warnings.warn(message, JournalSpaceLow, stacklevel=2)
    return free


class JournalFile:
    """One run's journal, open for appending and locked while open.

    `append` never raises: a line that cannot be written (full disk) stays in memory and is
    written with the next append or at `close`; `unwritten` counts such lines.
    """

    def __init__(self, directory: Path, run_uid: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{run_uid}{SUFFIX}"
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            raise JournalError(
                f"cannot create the run journal {self.path}: {exc.strerror}; make the directory "
                "writable or set storage.journal_dir to one that is"
            ) from None
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._backlog: list[bytes] = []
        #: The RunEngine thread appends while the writer's thread syncs: one writes at a time.
        self._writing = threading.Lock()
        self.error: OSError | None = None

    @property
    def unwritten(self) -> int:
        return len(self._backlog)

    def append(self, name: str, doc: dict[str, Any]) -> None:
        line = encode(name, doc)
        with self._writing:
            self._backlog.append(line)
            self._write_backlog()

    def _write_backlog(self) -> None:
        """Write what is held in memory; the caller holds `_writing`."""
        while self._backlog:
            line = self._backlog[0]
            try:
                written = os.write(self._fd, line)
            except OSError as exc:
                if self.error is None or exc.errno != self.error.errno:
                    log.error(
                        "cannot write the run journal %s (%s); %d document(s) kept in memory "
                        "until it can be written: free some disk space",
                        self.path,
                        exc.strerror,
                        len(self._backlog),
                    )
                self.error = exc
                return
            if written < len(line):  # a partial write on a full disk: keep the rest
                self._backlog[0] = line[written:]
                continue
            self._backlog.pop(0)
            self.error = None

    def sync(self) -> None:
        """Write what is held in memory and fsync (called off the RunEngine thread)."""
        with self._writing:
            if self._fd < 0:
                return
            self._write_backlog()
        try:
            os.fsync(self._fd)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                log.error("cannot fsync the run journal %s: %s", self.path, exc.strerror)

    def close(self) -> None:
        """Sync and release the lock; the file stays until its run is verified in Tiled."""
        if self._fd < 0:
            return
        self.sync()
        if self._backlog:
            log.error(
                "%d document(s) of run journal %s could not be written to disk; they are kept "
                "only until Tiled has them",
                len(self._backlog),
                self.path,
            )
        with self._writing:
            os.close(self._fd)
            self._fd = -1


@dataclass
class BadLine:
    number: int
    text: str
    problem: str


@dataclass
class JournalContents:
    path: Path
    documents: list[Document] = field(default_factory=list)
    bad_lines: list[BadLine] = field(default_factory=list)

    @property
    def run_uid(self) -> str:
        return self.path.name.split(".", 1)[0]

    @property
    def has_stop(self) -> bool:
        return any(name == "stop" for name, _ in self.documents)


def read_journal(path: Path) -> JournalContents:
    """The good documents of a journal, and each line that could not be read."""
    contents = JournalContents(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise JournalError(f"cannot read journal {path}: {exc.strerror}") from None
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            if not (
                isinstance(item, list)
                and len(item) == 2
                and isinstance(item[0], str)
                and isinstance(item[1], dict)
            ):
                raise ValueError("not a [name, document] pair")
        except ValueError as exc:
            text = line[:200].decode(errors="replace")
            contents.bad_lines.append(BadLine(number, text, str(exc)))
            continue
        contents.documents.append((item[0], item[1]))
    return contents


def is_live(path: Path) -> bool:
    """True while a writer holds the journal (its run is still going on)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def journals(directory: Path, *, include_bad: bool = False) -> Iterator[Path]:
    """The journal files of a directory, oldest first."""
    if not directory.is_dir():
        return iter(())
    found = [p for p in directory.iterdir() if p.name.endswith(SUFFIX)]
    if include_bad:
        found += [p for p in directory.iterdir() if p.name.endswith(BAD_SUFFIX)]
    return iter(sorted(found, key=lambda p: p.stat().st_mtime))
