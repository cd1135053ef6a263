"""The RunEngine-side journal: each document of each run appended to that run's file at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from teststand.storage.journal import JournalFile, check_space

SPACE_CHECK_EVERY = 1000  # documents


class RunJournal:
    """Routes documents to one `JournalFile` per run; warns early when the disk fills up.

    `append` returns the run's uid. At the stop document the file is handed back by `detach`,
    so that another thread syncs and closes it (the RunEngine never waits for an fsync).
    """

    def __init__(self, directory: Path, min_free_bytes: int = 500_000_000) -> None:
        self.directory = directory
        self.min_free_bytes = min_free_bytes
        directory.mkdir(parents=True, exist_ok=True)
        self._files: dict[str, JournalFile] = {}
        self._run_of: dict[str, str] = {}  # descriptor / resource uid -> run uid
        self._latest = ""
        self._count = 0

    def run_of(self, name: str, doc: dict[str, Any]) -> str:
        if name == "start":
            return str(doc["uid"])
        for field in ("run_start", "descriptor", "resource", "stream_resource"):
            owner = doc.get(field)
            if isinstance(owner, str):
                return self._run_of.get(owner, owner if field == "run_start" else self._latest)
        return self._latest

    def append(self, name: str, doc: dict[str, Any]) -> str:
        run = self.run_of(name, doc)
        if name == "start":
            check_space(self.directory, self.min_free_bytes)
            self._files[run] = JournalFile(self.directory, run)
            self._latest = run
        elif name in {"descriptor", "resource", "stream_resource"}:
            self._run_of[str(doc["uid"])] = run
        self._count += 1
        if self._count % SPACE_CHECK_EVERY == 0:
            check_space(self.directory, self.min_free_bytes)
        journal = self._files.get(run)
        if journal is not None:
            journal.append(name, doc)
        return run

    def detach(self, run: str) -> JournalFile | None:
        """Hand over a stopped run's file; forget its routing."""
        self._run_of = {k: v for k, v in self._run_of.items() if v != run}
        return self._files.pop(run, None)

    def open_files(self) -> list[JournalFile]:
        return list(self._files.values())
