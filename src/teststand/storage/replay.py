"""Replaying journals into Tiled: idempotent, and a journal is deleted only once verified."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from teststand.storage.annotations import apply_annotations
from teststand.storage.errors import StorageError
from teststand.storage.journal import (
    BAD_SUFFIX,
    SUFFIX,
    BadLine,
    Document,
    is_live,
    journals,
    read_journal,
)
from teststand.storage.runwriter import RunTally, stored_problems, write_run

log = logging.getLogger("teststand.storage.replay")

Outcome = Literal["stored", "already-stored", "live", "empty", "failed"]


@dataclass
class ReplayResult:
    path: Path
    outcome: Outcome
    run_uid: str = ""
    bad_lines: list[BadLine] = field(default_factory=list)
    problem: str = ""

    def describe(self) -> str:
        text = f"{self.path.name}: {self.outcome}"
        if self.problem:
            text += f" ({self.problem})"
        for bad in self.bad_lines:
            text += f"\n  line {bad.number} unreadable, kept in {self.path.name}: {bad.problem}"
        return text


def recovered_stop(documents: list[Document]) -> dict[str, Any]:
    """A stop document for a run whose writer died before its stop (deterministic uid)."""
    start = documents[0][1]
    counts: dict[str, int] = {}
    streams: dict[str, str] = {}
    for name, doc in documents:
        if name == "descriptor":
            streams[doc["uid"]] = doc["name"]
        elif name == "event":
            stream = streams.get(doc["descriptor"], "?")
            counts[stream] = counts.get(stream, 0) + 1
    return {
        "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"teststand-recovered-stop/{start['uid']}")),
        "run_start": start["uid"],
        "time": max(float(doc.get("time", 0.0)) for _, doc in documents),
        "exit_status": "fail",
        "reason": "teststand: the run ended without a stop document; recovered from its journal",
        "num_events": counts,
    }


def _finish(path: Path, bad_lines: list[BadLine]) -> None:
    if bad_lines:
        path.rename(path.with_name(path.name[: -len(SUFFIX)] + BAD_SUFFIX))
    else:
        path.unlink()


def replay_journal(client: Any, path: Path) -> ReplayResult:
    """Store one journal's run in Tiled unless it is already there complete; then remove it."""
    if is_live(path):
        return ReplayResult(path, "live")
    contents = read_journal(path)
    docs = contents.documents
    if not docs:
        _finish(path, contents.bad_lines)
        return ReplayResult(path, "empty", bad_lines=contents.bad_lines)
    if docs[0][0] != "start":
        path.rename(path.with_name(path.name[: -len(SUFFIX)] + BAD_SUFFIX))
        problem = "no readable start document; kept as " + path.name[: -len(SUFFIX)] + BAD_SUFFIX
        return ReplayResult(path, "failed", bad_lines=contents.bad_lines, problem=problem)
    uid = docs[0][1]["uid"]
    if not contents.has_stop:
        docs = [*docs, ("stop", recovered_stop(docs))]
    if uid in client:
        if not stored_problems(client, uid, RunTally.of(docs)):
            _finish(path, contents.bad_lines)
            return ReplayResult(path, "already-stored", uid, contents.bad_lines)
        client.delete_contents(uid, recursive=True, external_only=False)
    write_run(client, docs)
    problems = stored_problems(client, uid, RunTally.of(docs))
    if problems:
        return ReplayResult(path, "failed", uid, contents.bad_lines, "; ".join(problems))
    _finish(path, contents.bad_lines)
    return ReplayResult(path, "stored", uid, contents.bad_lines)


def replay_directory(client: Any, directory: Path) -> list[ReplayResult]:
    """Replay every journal of `directory` that no writer holds, then store the pending
    annotations of runs now in Tiled; typed errors stop the pass."""
    results = []
    for path in journals(directory):
        try:
            result = replay_journal(client, path)
        except StorageError:
            raise
        except Exception as exc:  # one bad run must not block the others
            log.warning("replaying %s failed: %s", path, exc)
            result = ReplayResult(path, "failed", problem=f"{type(exc).__name__}: {exc}")
        if result.outcome not in {"live", "empty"}:
            log.info("%s", result.describe())
        results.append(result)
    apply_annotations(client, directory)
    return results
