"""Pixel analysis: spatial clusters; in its own process behind the 0MQ proxy, killing it spares
acquisition."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.plans as bp
import numpy as np
import pytest
from bluesky import RunEngine
from bluesky.callbacks.zmq import Publisher
from helpers import analysed, analysis_process, free_port, run
from ophyd_async.core import init_devices

from teststand.callbacks.pixel_analysis import cluster_sizes
from teststand.devices.timepix3 import Timepix3
from teststand.sim.runner import start_simulator
from teststand.sim.timepix3_matrix import Source


@pytest.fixture
def proxy() -> Iterator[tuple[int, int]]:
    ports = free_port(), free_port()
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "bluesky-0MQ-proxy"), *map(str, ports)]
    )
    yield ports
    process.terminate()
    process.wait(10)


def test_clusters_join_touching_pixels_within_the_time_window_only() -> None:
    hits = [  # x, y, time of arrival (ns)
        (10, 10, 1000), (11, 11, 1005), (12, 12, 1010),  # a diagonal track: one cluster
        (100, 100, 1002),  # at the same time, far away: its own
        (10, 10, 5000), (10, 12, 5001),  # a pixel apart: two
        (50, 50, 9000), (51, 50, 9150),  # touching, but 150 ns apart: two
        (200, 200, 20000), (201, 200, 20080), (202, 200, 20160),  # chained through the middle
    ]  # fmt: skip
    x, y, toa = (np.array(column) for column in zip(*hits, strict=True))
    sizes = cluster_sizes(x.astype(np.uint8), y.astype(np.uint8), toa.astype(np.int64), 100)
    assert sorted(sizes.tolist()) == [1, 1, 1, 1, 1, 3, 3]
    assert cluster_sizes(x[:0].astype(np.uint8), y[:0], toa[:0], 100).size == 0


def test_killing_the_analysis_neither_stops_nor_slows_acquisition(
    RE: RunEngine, proxy: tuple[int, int], tmp_path: Path
) -> None:
    out = tmp_path / "results"
    analysis = analysis_process(proxy[1], out)
    publisher = Publisher(("127.0.0.1", proxy[0]))
    RE.subscribe(publisher)
    with start_simulator("timepix3", transport="tcp", speed=5.0) as sim:
        sim.host.call(lambda: setattr(sim.instrument.matrix, "source", Source("beta", 20_000)))
        with init_devices():
            det = Timepix3(f"tcp://{sim.address}", tmp_path / "data", name="tpx")
        try:
            RE(bps.mv(det.shutter_time, 0.05))
            _, result = analysed(RE, lambda: bp.count([det], 3), out)
            assert result["hits"] > 0 and result["clusters"] < result["hits"], (
                result
            )  # beta clusters
            assert result["collections"] == 3

            frame_times: list[float] = []

            def kill_midway(name: str, doc: dict[str, Any]) -> None:
                if name == "event":
                    frame_times.append(time.monotonic())
                    if doc["seq_num"] == 4:
                        os.kill(analysis.pid, signal.SIGKILL)

            (killed_uid,) = RE(bp.count([det], 8), kill_midway).run_start_uids
            analysis.wait(10)
            before = frame_times[3] - frame_times[0]
            after = frame_times[7] - frame_times[4]
            assert len(frame_times) == 8  # the run went on to its end
            assert after < 2 * before + 1.0  # and no slower (generous: a loaded machine)
            assert not (out / f"{killed_uid}.json").exists()

            analysis = analysis_process(proxy[1], out)  # restarted: resumes with the next run
            _, result = analysed(RE, lambda: bp.count([det], 1), out)
            assert result["collections"] == 1
        finally:
            analysis.kill()
            analysis.wait(10)
            run(RE, det.close)
            publisher._socket.close(linger=0)  # unsent documents must not hold up the exit
            publisher.close()
