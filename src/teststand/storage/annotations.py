"""Metadata added to a run after it ended (its IV analysis, a verdict), kept on disk until stored.

The live analysis publishes its results when the run stops, possibly before the run is in Tiled
(or while Tiled is down). `save_annotation` writes them next to the journals as
`<uid>.annotation.json` (merged with what is there); `apply_annotations` merges each into its
run's top-level metadata in Tiled once the run is there and verified (its journal gone),
and only then deletes the file.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from teststand.storage.journal import SUFFIX as JOURNAL_SUFFIX

log = logging.getLogger("teststand.storage.annotations")
SUFFIX = ".annotation.json"


def annotation_path(directory: Path, uid: str) -> Path:
    return directory / f"{uid}{SUFFIX}"


def save_annotation(directory: Path, uid: str, metadata: dict[str, Any]) -> Path:
    """Merge `metadata` into the run's pending annotation (atomically replaced on disk)."""
    path = annotation_path(directory, uid)
    merged = {**(json.loads(path.read_text()) if path.exists() else {}), **metadata}
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(merged, allow_nan=False))
    os.replace(temporary, path)
    return path


def pending_annotations(directory: Path) -> list[str]:
    """Run uids with an annotation not yet stored in Tiled."""
    return sorted(p.name[: -len(SUFFIX)] for p in directory.glob(f"*{SUFFIX}"))


def apply_annotations(client: Any, directory: Path, uids: Iterable[str] | None = None) -> list[str]:
    """Store the pending annotations of runs already in Tiled; returns the uids stored."""
    stored = []
    for uid in pending_annotations(directory) if uids is None else uids:
        path = annotation_path(directory, uid)
        if not path.exists() or (directory / f"{uid}{JOURNAL_SUFFIX}").exists():
            continue  # nothing to store, or the run itself is not verified in Tiled yet
        if uid not in client:
            continue
        try:
            client[uid].update_metadata(json.loads(path.read_text()))
        except Exception as exc:  # kept on disk; the next replay tries again
            log.warning("storing the annotation of run %s failed: %s", uid, exc)
            continue
        path.unlink()
        stored.append(uid)
    return stored
