"""Timepix3 frames in HDF5, registered in Tiled as the run's data (external, not copied)."""

from __future__ import annotations

from pathlib import Path

import bluesky.plan_stubs as bps
import bluesky.plans as bp
import numpy as np
import pytest
from bluesky import RunEngine
from helpers import run
from ophyd_async.core import init_devices

from teststand.callbacks.tiled_writer import LiveTiledWriter
from teststand.devices.timepix3 import Timepix3
from teststand.sim.runner import start_simulator
from teststand.sim.timepix3_matrix import Source
from teststand.storage.embedded import EmbeddedServer


def test_tiled_reads_the_count_maps_and_totals_from_the_detector_file(
    RE: RunEngine, tiled_server: EmbeddedServer, tmp_path: Path
) -> None:
    assert tiled_server.detector_dir is not None
    tiled_server.client().create_container("timepix3")
    writer = LiveTiledWriter(
        lambda: tiled_server.client()["timepix3"], tmp_path / "journal", flush_interval=0.05
    )
    uids: list[str] = []
    RE.subscribe(writer)
    RE.subscribe(lambda name, doc: uids.append(doc["uid"]) if name == "start" else None)
    with start_simulator("timepix3", transport="tcp", speed=5.0) as sim:
        sim.host.call(lambda: setattr(sim.instrument.matrix, "source", Source("flat", 50_000)))
        with init_devices():
            det = Timepix3(f"tcp://{sim.address}", tiled_server.detector_dir, name="tpx")
        try:
            RE(bps.mv(det.shutter_time, 0.05))
            RE(bp.count([det], 3))
        finally:
            run(RE, det.close)
    assert writer.wait(60)
    writer.close()
    primary = tiled_server.client()["timepix3"][uids[-1]]["primary"]
    counts = np.asarray(primary["tpx-hit_count"].read()).ravel()
    maps = np.asarray(primary["tpx-count_map"].read())
    assert maps.shape == (3, 1, 256, 256)  # events, collections per event, rows, columns
    assert maps.sum(axis=(1, 2, 3)).tolist() == counts.tolist()
    assert counts.min() > 1000  # 50 kHz for 0.05 s
    assert np.asarray(primary["tpx-mean_tot"].read()).ravel() == pytest.approx([44.0] * 3)
    assert list(tiled_server.detector_dir.glob("*.h5"))  # in place: the file is the data
