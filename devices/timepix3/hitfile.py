"""The HDF5 file of one Timepix3 acquisition: a hit table and per-collection maps and totals.

Layout (SWMR, readable while written and after a crash; chunked and compressed):
- `/hits/x`, `/hits/y` (uint8), `/hits/toa` (int64, ns), `/hits/tot` (uint16, 25 ns): one row per
  hit, appended as the stream arrives; Blosc/LZ4 with byte shuffle by default (`hdf5plugin`'s
  filter: a reader imports `hdf5plugin` before opening the file, as Tiled's HDF5 adapter does).
- per collection i: `/count_map[i]` (256 x 256 uint32, [y, x]), `/hit_count[i]`, `/hit_offset[i]`
  (its first row in `/hits`), `/mean_tot[i]` (25 ns), `/rate[i]` (hits/s), `/unknown[i]`
  (packets of unknown type), `/lost[i]` (pixel packets the readout sent that never arrived),
  `/lost_datagrams[i]` (UDP datagrams missing from the sequence).

Writes happen in one writer thread of the file (h5py releases the interpreter lock in HDF5's
dataset calls), so compressing and writing a batch overlaps decoding the next one; `append`
waits only when `QUEUE_DEPTH` batches are still unwritten. `add_collection` returns once
everything before it is written and flushed, so a reader told of a collection finds it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import h5py  # type: ignore[import-untyped]
import hdf5plugin
import numpy as np
import numpy.typing as npt

from teststand.devices.timepix3.protocol import Hits
from teststand.errors import TeststandError

HIT_COLUMNS = {"x": np.uint8, "y": np.uint8, "toa": np.int64, "tot": np.uint16}
#: Per-collection datasets: name -> (dtype, shape of one collection).
COLLECTION_DATASETS: dict[str, tuple[Any, tuple[int, ...]]] = {
    "count_map": (np.uint32, (256, 256)),
    "hit_count": (np.int64, ()),
    "hit_offset": (np.int64, ()),
    "mean_tot": (np.float64, ()),
    "rate": (np.float64, ()),
    "unknown": (np.int64, ()),
    "lost": (np.int64, ()),
    "lost_datagrams": (np.int64, ()),
}
HIT_CHUNK = 1 << 18
QUEUE_DEPTH = 4  # batches waiting for the writer thread before `append` waits
#: The hit table's compression: a name the stand file's `compression` setting may give.
CODECS: dict[str | None, Callable[[], dict[str, Any]]] = {
    "blosc-lz4": lambda: dict(hdf5plugin.Blosc("lz4", 5, hdf5plugin.Blosc.SHUFFLE)),
    "lzf": lambda: {"compression": "lzf", "shuffle": True},
    "gzip": lambda: {"compression": "gzip", "compression_opts": 1, "shuffle": True},
    None: dict,
}


class HitFileError(TeststandError, ValueError):
    """A hit file that cannot be made as asked (an unknown codec), or a write that failed."""


def codec_options(codec: str | None) -> dict[str, Any]:
    """h5py `create_dataset` keywords of a codec name (`None`: no compression)."""
    if codec not in CODECS:
        names = ", ".join(str(name) for name in CODECS)
        raise HitFileError(f"unknown hit-table compression {codec!r}; choose one of {names}")
    return CODECS[codec]()


class HitFile:
    """Appends hits and closes collections; `flush()` makes them visible to readers."""

    def __init__(self, path: Path, compression: str | None = "blosc-lz4") -> None:
        options = codec_options(compression)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = h5py.File(path, "w", libver="latest")
        hits = self._file.create_group("hits")
        self._hits = {
            name: hits.create_dataset(
                name, (0,), dtype, maxshape=(None,), chunks=(HIT_CHUNK,), **options
            )
            for name, dtype in HIT_COLUMNS.items()
        }
        self._collections = {
            name: self._file.create_dataset(
                name,
                (0, *shape),
                dtype,
                maxshape=(None, *shape),
                chunks=(1, *shape) if shape else (1024,),
                compression="gzip" if shape else None,
            )
            for name, (dtype, shape) in COLLECTION_DATASETS.items()
        }
        self._file.swmr_mode = True
        self.rows = 0  # rows appended (written, or queued for the writer)
        self.collections = 0
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue(QUEUE_DEPTH)
        self._error: BaseException | None = None
        self._writer = threading.Thread(target=self._work, name=f"hits {path.name}", daemon=True)
        self._writer.start()

    def append(self, hits: Hits) -> None:
        """Queue these hits (arrays the caller no longer changes) for the writer thread."""
        if len(hits):
            self._submit(partial(self._write_hits, self.rows, hits))
            self.rows += len(hits)

    def add_collection(self, values: dict[str, npt.ArrayLike]) -> None:
        """One row of every per-collection dataset; returns when it is on disk, flushed."""
        self._submit(partial(self._write_collection, self.collections, values))
        self.collections += 1
        self.flush()

    def flush(self) -> None:
        """Wait for the writer, then flush: what was appended is visible to SWMR readers."""
        if self._writer.is_alive():
            self._submit(self._flush)
            self._jobs.join()
        self._raise()

    def close(self) -> None:
        """Write what is queued, flush and close; raises `HitFileError` if a write failed."""
        if self._writer.is_alive():
            self._jobs.put(self._flush)
            self._jobs.put(None)
            self._writer.join()
        if self._file.id.valid:
            self._file.close()
        self._raise()

    # -- the writer thread -----------------------------------------------------------------------
    def _submit(self, job: Callable[[], None]) -> None:
        self._raise()
        self._jobs.put(job)

    def _raise(self) -> None:
        if self._error is not None:
            raise HitFileError(f"writing {self.path} failed: {self._error}") from self._error

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                if job is None:
                    return
                if self._error is None:
                    job()
            except Exception as exc:  # reported by the next call from the acquisition
                self._error = exc
            finally:
                self._jobs.task_done()

    def _write_hits(self, start: int, hits: Hits) -> None:
        for name, dataset in self._hits.items():
            dataset.resize((start + len(hits),))
            dataset[start:] = getattr(hits, name)

    def _write_collection(self, i: int, values: dict[str, npt.ArrayLike]) -> None:
        for name, dataset in self._collections.items():
            dataset.resize(i + 1, axis=0)
            dataset[i] = values[name]

    def _flush(self) -> None:
        if self._file.id.valid:
            self._file.flush()
