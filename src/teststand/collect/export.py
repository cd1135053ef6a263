"""Exports of a collector's history: an HDF5 file, or a run of its own in Tiled.

HDF5: one dataset per PV (named by the PV), a table of `time` (s, UNIX epoch) and `value`, with
the PV's units, name and sample count as attributes; the collector's settings on the root.
Tiled: a run whose start document holds the collector's settings (`plan_name: collector`), one
stream per PV (named by `stream_key`), written with the storage layer's run writer.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py  # type: ignore[import-untyped]
import numpy as np
from event_model import compose_run

from teststand.collect.config import CollectorConfig
from teststand.collect.errors import CollectorError
from teststand.collect.recorder import History
from teststand.storage.client import connect
from teststand.storage.journal import Document

SAMPLE = np.dtype([("time", np.float64), ("value", np.float64)])


def stream_key(pv: str) -> str:
    """A PV's name as a stream and data key (letters, digits, underscores)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", pv)


def write_hdf5(path: Path, config: CollectorConfig, histories: Sequence[History]) -> Path:
    """Write the histories to `path` (a new file; an existing one is refused)."""
    path = path.expanduser()
    if path.suffix not in {".h5", ".hdf5", ".nxs"}:
        raise CollectorError(f"export to {path}: give a file name ending in .h5 or .hdf5")
    if path.exists():
        raise CollectorError(f"export to {path}: the file exists; give a new file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(path, "w") as file:
            file.attrs["collector"] = json.dumps(config.model_dump())
            file.attrs["exported"] = time.time()
            for history in histories:
                table = np.empty(len(history.times), dtype=SAMPLE)
                table["time"] = history.times
                table["value"] = history.values
                dataset = file.create_dataset(history.pv, data=table)
                dataset.attrs["pv"] = history.pv
                dataset.attrs["units"] = history.units
                dataset.attrs["time_units"] = "s (UNIX epoch)"
                dataset.attrs["overwritten"] = history.overwritten
    except OSError as exc:
        raise CollectorError(f"export to {path} failed: {exc}") from None
    return path


def run_documents(
    config: CollectorConfig, histories: Sequence[History], started: float
) -> list[Document]:
    """The documents of one run holding the histories, one stream per PV."""
    run = compose_run(
        metadata={
            "plan_name": "collector",
            "collector": config.model_dump(),
            "pvs": [h.pv for h in histories],
            "recording_started": started,
        }
    )
    documents: list[Document] = [("start", dict(run.start_doc))]
    for history in histories:
        key = stream_key(history.pv)
        data_key: dict[str, Any] = {
            "dtype": "number",
            "shape": [],
            "source": f"ca://{history.pv}",
            "units": history.units,
        }
        descriptor = run.compose_descriptor(name=key, data_keys={key: data_key})
        documents.append(("descriptor", dict(descriptor.descriptor_doc)))
        if len(history.times):
            times = history.times.tolist()
            page = descriptor.compose_event_page(
                data={key: history.values.tolist()},
                timestamps={key: times},
                time=times,
                seq_num=list(range(1, len(times) + 1)),
            )
            documents.append(("event_page", dict(page)))
    documents.append(("stop", dict(run.compose_stop())))
    return documents


def write_tiled(
    uri: str,
    api_key: str | None,
    config: CollectorConfig,
    histories: Sequence[History],
    started: float,
) -> str:
    """Write the histories into Tiled as a run of their own; return its uid."""
    from teststand.storage.runwriter import write_run  # Tiled's writer: slow to import

    documents = run_documents(config, histories, started)
    write_run(connect(uri, api_key), documents)
    return str(documents[0][1]["uid"])
