"""Live analysis of a pixel detector's runs: hit map, ToT spectrum and clusters, per run.

A document callback meant for its own process (`teststand analysis serve`, fed by bluesky's 0MQ
`RemoteDispatcher`), so that a crash here never touches acquisition. It follows the detector's
StreamResource/StreamDatum documents and reads each new collection from the HDF5 file (SWMR:
readable while it is written): the count maps, and the hit table rows of those collections.
Clusters are groups of neighbouring pixels (8-connected, chained) hit within `window_ns` of
each other: the tracks of a beta source; a compiled kernel over the hits sorted by time.
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
from numba import njit

TOT_BINS = 64  # ToT spectrum bins of 16 counts (0 .. 1023)
SIZE_BINS = 10  # cluster-size histogram: 1 .. 9 pixels, and 10 or more


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
        self.cluster_sizes = np.zeros(SIZE_BINS, np.int64)
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
            hits = {name: file[f"hits/{name}"][first:last] for name in ("x", "y", "toa", "tot")}
        self.collections += stop - start
        self.hits += int(hits["tot"].size)
        self.tot_spectrum += np.bincount(hits["tot"] // 16, minlength=TOT_BINS)[:TOT_BINS]
        sizes = cluster_sizes(hits["x"], hits["y"], hits["toa"], self.window_ns)
        self.clusters += int(sizes.size)
        self.cluster_sizes += np.bincount(np.minimum(sizes, SIZE_BINS) - 1, minlength=SIZE_BINS)

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
                "cluster_sizes": self.cluster_sizes.tolist(),  # 1, 2, ... 9, 10 or more pixels
                "mean_tot": mean_tot,
                "tot_spectrum": self.tot_spectrum.tolist(),
                "busiest_pixel": [
                    int(i) for i in np.unravel_index(self.hit_map.argmax(), (256, 256))
                ],
                "pixels_hit": int((self.hit_map > 0).sum()),
            },
        )


def cluster_sizes(
    x: npt.NDArray[np.uint8], y: npt.NDArray[np.uint8], toa: npt.NDArray[np.int64], window_ns: int
) -> npt.NDArray[np.int64]:
    """The pixel count of each cluster: hits joined when their pixels touch (sides or corners)
    and their times of arrival differ by at most `window_ns`, and chained through such pairs."""
    if not toa.size:
        return np.zeros(0, np.int64)
    order = np.argsort(toa, kind="stable")
    roots = _cluster_roots(
        x[order].astype(np.int64), y[order].astype(np.int64), toa[order], np.int64(window_ns)
    )
    sizes = np.bincount(roots)
    return sizes[sizes > 0].astype(np.int64)


@njit(cache=True, nogil=True)
def _root(parent, i):  # type: ignore[no-untyped-def]
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


@njit(cache=True, nogil=True)
def _cluster_roots(x, y, toa, window):  # type: ignore[no-untyped-def]
    """Union-find over the pairs of time-sorted hits within `window` that touch."""
    n = x.size
    parent = np.arange(n)
    for i in range(n):
        j = i + 1
        while j < n and toa[j] - toa[i] <= window:
            if abs(x[j] - x[i]) <= 1 and abs(y[j] - y[i]) <= 1:
                a, b = _root(parent, i), _root(parent, j)
                if a != b:
                    parent[max(a, b)] = min(a, b)
            j += 1
    for i in range(n):
        parent[i] = _root(parent, i)
    return parent
