"""The Timepix3's UDP data stream with datagrams dropped by the simulated readout: the device finds
every gap in the datagrams' sequence numbers and reports the hits lost in the run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import bluesky.plan_stubs as bps
import bluesky.plans as bp
import h5py
import hdf5plugin  # noqa: F401  (the hit table's filter)
import pytest
from bluesky import RunEngine
from helpers import run
from ophyd_async.core import init_devices

from teststand.devices.timepix3 import Timepix3
from teststand.sim.runner import RunningSim, start_simulator
from teststand.sim.timepix3_matrix import Source


@pytest.fixture
def lossy_sim() -> Iterator[RunningSim]:
    with start_simulator("timepix3", transport="tcp", data="udp", loss=0.2, seed=3) as running:
        yield running


def test_lost_datagrams_and_hits_equal_what_the_readout_dropped(
    RE: RunEngine, lossy_sim: RunningSim, tmp_path: Path
) -> None:
    sim = lossy_sim.instrument
    lossy_sim.host.call(lambda: setattr(sim.matrix, "source", Source("flat", 100_000)))
    with init_devices():
        det = Timepix3(f"tcp://{lossy_sim.address}", tmp_path, name="tpx", stall_timeout=3)
    try:
        RE(bps.mv(det.shutter_time, 0.1))
        docs: list[tuple[str, dict]] = []  # type: ignore[type-arg]
        RE(bp.count([det], 3), lambda name, doc: docs.append((name, doc)))
        assert run(RE, det.lost_datagrams.get_value) >= 0
    finally:
        run(RE, det.close)
    assert lossy_sim.address and sim.data_address.startswith("udp://")
    datagrams, hits = lossy_sim.host.call(lambda: (sim.udp.dropped_datagrams, sim.udp.dropped_hits))
    assert datagrams > 0 and hits > 0  # loss 0.2 of ~60 datagrams with hits
    (path,) = tmp_path.glob("*.h5")
    with h5py.File(path, "r") as file:
        assert int(file["lost_datagrams"][:].sum()) == datagrams  # found as sequence gaps
        assert int(file["lost"][:].sum()) == hits  # sent (end of shutter) - arrived
        assert file["hits/x"].shape == (file["hit_count"][:].sum(),)
        assert file["count_map"][:].sum() == file["hit_count"][:].sum()
    resources = {d["data_key"] for name, d in docs if name == "stream_resource"}
    assert "tpx-lost" in resources  # the run's reading of the hits lost per frame
