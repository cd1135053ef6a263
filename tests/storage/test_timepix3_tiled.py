"""Timepix3 frames in HDF5, registered in Tiled as the run's data (external, not copied), and
the live analysis's result stored as the run's annotation."""

from __future__ import annotations

import time
from pathlib import Path

import bluesky.plan_stubs as bps
import bluesky.plans as bp
import numpy as np
from bluesky import RunEngine
from helpers import analysed, pixel_analysis, run
from ophyd_async.core import init_devices

from teststand.callbacks.tiled_writer import LiveTiledWriter
from teststand.devices.timepix3 import Timepix3
from teststand.sim.runner import start_simulator
from teststand.sim.timepix3_matrix import Source
from teststand.storage.embedded import EmbeddedServer


def test_tiled_reads_the_detector_file_and_stores_the_analysis_as_an_annotation(
    RE: RunEngine, tiled_server: EmbeddedServer, tmp_path: Path
) -> None:
    """The run's maps and totals are read from the HDF5 file in place; `teststand analysis
    serve --journal` (its own process, behind the 0MQ proxy) leaves its result beside the
    writer's journals and the writer stores it as the run's `pixel_analysis` metadata."""
    assert tiled_server.detector_dir is not None
    tiled_server.client().create_container("timepix3")
    journal, out = tmp_path / "journal", tmp_path / "results"
    writer = LiveTiledWriter(
        lambda: tiled_server.client()["timepix3"], journal, flush_interval=0.05, replay_interval=0.3
    )
    RE.subscribe(writer)
    with (
        start_simulator("timepix3", transport="tcp", speed=5.0) as sim,
        pixel_analysis("--journal", str(journal), out=out) as (publisher, _),
    ):
        RE.subscribe(publisher)
        sim.host.call(lambda: setattr(sim.instrument.matrix, "source", Source("beta", 20_000)))
        with init_devices():
            det = Timepix3(f"tcp://{sim.address}", tiled_server.detector_dir, name="tpx")
        try:
            RE(bps.mv(det.shutter_time, 0.05))
            uid, result = analysed(RE, lambda: bp.count([det], 3), out)
        finally:
            run(RE, det.close)
        assert writer.wait(60)
        run_node = tiled_server.client()["timepix3"][uid]
        deadline = time.monotonic() + 30
        while "pixel_analysis" not in run_node.metadata and time.monotonic() < deadline:
            time.sleep(0.2)
            run_node = tiled_server.client()["timepix3"][uid]
    writer.close()
    assert run_node.metadata["pixel_analysis"] == result  # the annotation, stored in Tiled
    assert result["collections"] == 3 and 1 < result["mean_cluster_size"] < 6  # beta clusters
    primary = run_node["primary"]
    counts = np.asarray(primary["tpx-hit_count"].read()).ravel()
    maps = np.asarray(primary["tpx-count_map"].read())
    assert maps.shape == (3, 1, 256, 256)  # events, collections per event, rows, columns
    assert maps.sum(axis=(1, 2, 3)).tolist() == counts.tolist()
    assert counts.sum() == result["hits"]
    assert np.asarray(primary["tpx-lost"].read()).ravel().tolist() == [0, 0, 0]
    assert list(tiled_server.detector_dir.glob("*.h5"))  # in place: the file is the data
