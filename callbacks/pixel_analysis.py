"""Live analysis of a pixel detector's runs: hit map, ToT spectrum and clusters, per run.

A document callback meant for its own process (`teststand analysis serve`, fed by bluesky's 0MQ
`RemoteDispatcher`), so that a crash here never touches acquisition. It follows the detector's
StreamResource/StreamDatum documents and reads each new collection from the HDF5 file (SWMR:
readable while it is written): the count maps, and the hit table rows of those collections.
Clusters are time-coincident hits (within `window_ns`), the events of a beta source.
At the run's stop, `on_result(uid, result)` gets the summary.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import h5py  # type: ignore[import-untyped]
import hdf5plugin  # noqa: F401  (registers the hit table's Blosc filter)
import numpy as np
import numpy.typing as npt
from event_model import DocumentRouter, RunStart, RunStop, StreamDatum, StreamResource

TOT_BINS = 64  # ToT spectrum bins of 16 counts (0 .. 1023)


class PixelLiveAnalysis(DocumentRouter):
    """`RemoteDispatcher.subscribe(PixelLiveAnalysis(on_result))`."""

    def __init__(
        self, on_result: Callable[[str, dict[str, Any]], None], *, window_ns: int = 100
    ) -> None:
        super().__init__()
        self.on_result = on_result
        self.window_ns = window_ns
        self._files: dict[str, Path] = {}  # stream resource uid -> file of its count maps
        self._reset("")

    def _reset(self, uid: str) -> None:
        self._uid = uid
        self._module: str | None = None
        self.hit_map = np.zeros((256, 256), np.int64)
        self.tot_spectrum = np.zeros(TOT_BINS, np.int64)
        self.clusters = 0
        self.hits = 0
        self.collections = 0

    def start(self, doc: RunStart) -> None:
        self._reset(doc["uid"])
        self._module = str(doc.get("module_id") or "") or None
        self._files.clear()

    def stream_resource(self, doc: StreamResource) -> None:
        if doc.get("mimetype") == "application/x-hdf5" and doc["parameters"].get("dataset") == (
            "/count_map"
        ):
            self._files[doc["uid"]] = Path(urlparse(doc["uri"]).path)

    def stream_datum(self, doc: StreamDatum) -> None:
        path = self._files.get(doc["stream_resource"])
        if path is None:
            return
        start, stop = doc["indices"]["start"], doc["indices"]["stop"]
        with h5py.File(path, "r", swmr=True) as file:
            self.hit_map += file["count_map"][start:stop].sum(axis=0, dtype=np.int64)
            offsets, counts = file["hit_offset"][start:stop], file["hit_count"][start:stop]
            first, last = int(offsets[0]), int(offsets[-1] + counts[-1])
            tot = file["hits/tot"][first:last]
            toa = file["hits/toa"][first:last]
        self.collections += stop - start
        self.hits += int(tot.size)
        self.tot_spectrum += np.bincount(tot // 16, minlength=TOT_BINS)[:TOT_BINS]
        self.clusters += clusters_in(toa, self.window_ns)

    def stop(self, doc: RunStop) -> None:
        if not self._files and not self.collections:
            return  # not a pixel-detector run
        edges = np.arange(TOT_BINS) * 16
        mean_tot = float((self.tot_spectrum * (edges + 8)).sum() / self.hits) if self.hits else 0.0
        self.on_result(
            self._uid,
            {
                "module_id": self._module,
                "collections": self.collections,
                "hits": self.hits,
                "clusters": self.clusters,
                "mean_cluster_size": self.hits / self.clusters if self.clusters else 0.0,
                "mean_tot": mean_tot,
                "tot_spectrum": self.tot_spectrum.tolist(),
                "busiest_pixel": [
                    int(i) for i in np.unravel_index(self.hit_map.argmax(), (256, 256))
                ],
                "pixels_hit": int((self.hit_map > 0).sum()),
            },
        )


def clusters_in(toa: npt.NDArray[np.int64], window_ns: int) -> int:
    """Groups of hits whose times of arrival lie within `window_ns` of the previous hit."""
    if not toa.size:
        return 0
    ordered = np.sort(toa)
    return int(np.count_nonzero(np.diff(ordered) > window_ns)) + 1
