"""`teststand storage status`: the journals whose runs are not yet verified in Tiled."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from teststand.storage.journal import BAD_SUFFIX, is_live, journals, read_journal


@dataclass
class JournalStatus:
    path: Path
    state: str  # "live" (being written), "pending" (to replay) or "bad" (needs a look)
    run_uid: str
    documents: int
    events: int
    bad_lines: int
    has_stop: bool
    age_s: float

    def line(self) -> str:
        stop = "stopped" if self.has_stop else "no stop"
        bad = f", {self.bad_lines} unreadable line(s)" if self.bad_lines else ""
        return (
            f"{self.state:8} {self.run_uid}  {self.documents} docs, {self.events} events, "
            f"{stop}{bad}, {self.age_s / 60:.0f} min old  {self.path}"
        )


def journal_status(directory: Path) -> list[JournalStatus]:
    """Every journal in `directory`, oldest first."""
    found = []
    now = time.time()
    for path in journals(directory, include_bad=True):
        contents = read_journal(path)
        state = "bad" if path.name.endswith(BAD_SUFFIX) else "pending"
        if state == "pending" and is_live(path):
            state = "live"
        events = sum(
            len(doc.get("seq_num", [])) if name == "event_page" else 1
            for name, doc in contents.documents
            if name in {"event", "event_page"}
        )
        found.append(
            JournalStatus(
                path=path,
                state=state,
                run_uid=contents.run_uid,
                documents=len(contents.documents),
                events=events,
                bad_lines=len(contents.bad_lines),
                has_stop=contents.has_stop,
                age_s=now - path.stat().st_mtime,
            )
        )
    return found
