"""The HDF5 file of one Timepix3 acquisition: a hit table and per-collection maps and totals.

Layout (SWMR, readable while written and after a crash; chunked and compressed):
- `/hits/x`, `/hits/y` (uint8), `/hits/toa` (int64, ns), `/hits/tot` (uint16, 25 ns): one row per
  hit, appended as the stream arrives.
- per collection i: `/count_map[i]` (256 x 256 uint32, [y, x]), `/hit_count[i]`, `/hit_offset[i]`
  (its first row in `/hits`), `/mean_tot[i]` (25 ns), `/rate[i]` (hits/s), `/unknown[i]`
  (packets of unknown type), `/lost[i]` (pixel packets the readout sent that never arrived).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py  # type: ignore[import-untyped]
import numpy as np
import numpy.typing as npt

from teststand.devices.timepix3.protocol import Hits

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
}
HIT_CHUNK = 1 << 18


class HitFile:
    """Appends hits and closes collections; `flush()` makes them visible to readers."""

    def __init__(self, path: Path, compression: str | None = "lzf") -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = h5py.File(path, "w", libver="latest")
        hits = self._file.create_group("hits")
        self._hits = {
            name: hits.create_dataset(
                name, (0,), dtype, maxshape=(None,), chunks=(HIT_CHUNK,), compression=compression
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
        self.rows = 0
        self.collections = 0

    def append(self, hits: Hits) -> None:
        n = len(hits)
        if not n:
            return
        for name, dataset in self._hits.items():
            dataset.resize((self.rows + n,))
            dataset[self.rows :] = getattr(hits, name)
        self.rows += n

    def add_collection(self, values: dict[str, npt.ArrayLike]) -> None:
        i = self.collections
        for name, dataset in self._collections.items():
            dataset.resize(i + 1, axis=0)
            dataset[i] = values[name]
        self.collections += 1
        self.flush()

    def flush(self) -> None:
        if self._file.id.valid:
            self._file.flush()

    def close(self) -> None:
        if self._file.id.valid:
            self._file.flush()
            self._file.close()
