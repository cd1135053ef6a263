"""The Timepix3 detector against the simulated readout over real sockets, in a RunEngine."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.plans as bp
import h5py
import hdf5plugin
import numpy as np
import pytest
from bluesky import RunEngine
from bluesky.utils import FailedStatus
from helpers import run
from ophyd_async.core import init_devices

from teststand.devices.timepix3 import (
    DataStreamStopped,
    HitFileError,
    PacketDecoder,
    Timepix3,
    Timepix3Error,
)
from teststand.sim import timepix3_packets as packets
from teststand.sim.runner import RunningSim, start_simulator
from teststand.sim.timepix3_matrix import Source


def test_decoder_reads_what_the_readout_packs_across_cut_buffers() -> None:
    rng = random.Random(5)
    base = 40e9  # past one 26.8 s wrap of the 30-bit coarse time
    truth = [(rng.randrange(256), rng.randrange(256), base + i * 997.3, rng.randrange(1, 1024))
             for i in range(2000)]  # fmt: skip
    words = [packets.global_time_packet(base - 1000), packets.tdc_packet(7, base)]
    words += [packets.pixel_packet(x, y, t, tot) for x, y, t, tot in truth]
    words += [0x3 << 60, packets.end_of_shutter_packet(len(truth))]
    raw = packets.pack(words)
    decoder = PacketDecoder()
    parts = [decoder.decode(raw[a:b]) for a, b in ((0, 333), (333, 9001), (9001, len(raw)))]
    x = np.concatenate([p.hits.x for p in parts])
    toa = np.concatenate([p.hits.toa for p in parts])
    tot = np.concatenate([p.hits.tot for p in parts])
    assert x.tolist() == [h[0] for h in truth]
    assert np.abs(toa - np.array([h[2] for h in truth])).max() < 1.5625 + 1  # fine ticks, whole ns
    assert tot.tolist() == [h[3] for h in truth]
    assert decoder.unknown == 1  # the 0x3 packet: counted, not a hit
    assert parts[-1].frame_ends == [(len(parts[-1].hits), 2000)]
    assert parts[0].tdc_triggers.tolist() == [7]


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSim]:
    with start_simulator("timepix3", transport="tcp", speed=5.0) as running:
        yield running


@pytest.fixture
def det(RE: RunEngine, sim: RunningSim, tmp_path: Path) -> Iterator[Timepix3]:
    sim.host.call(lambda: setattr(sim.instrument.matrix, "source", Source("flat", 100_000)))
    with init_devices():
        det = Timepix3(f"tcp://{sim.address}", tmp_path, name="tpx", stall_timeout=1.5)
    RE(bps.mv(det.shutter_time, 0.05))
    yield det
    sim.host.call(sim.instrument.unstall)
    run(RE, det.close)


def fails_with(RE: RunEngine, plan: Any, error: type[Exception], match: str) -> None:
    """`plan` fails with `error` (the RunEngine wraps a failed status in `FailedStatus`)."""
    with pytest.raises((error, FailedStatus)) as info:
        RE(plan)
    cause = info.value if isinstance(info.value, error) else info.value.__cause__
    assert isinstance(cause, error), repr(info.value)
    assert re.search(match, str(cause)), str(cause)


def written(path: Path) -> h5py.File:
    (file,) = path.glob("*.h5")
    return h5py.File(file, "r", swmr=True)


def test_frames_go_to_hdf5_announced_as_stream_resources(
    RE: RunEngine, det: Timepix3, sim: RunningSim, tmp_path: Path
) -> None:
    docs: list[tuple[str, dict]] = []  # type: ignore[type-arg]
    RE(bp.count([det], 2), lambda name, doc: docs.append((name, doc)))
    resources = {d["data_key"]: d for n, d in docs if n == "stream_resource"}
    assert set(resources) == {
        "tpx-count_map",
        "tpx-hit_count",
        "tpx-mean_tot",
        "tpx-rate",
        "tpx-lost",
    }
    assert resources["tpx-count_map"]["mimetype"] == "application/x-hdf5"
    datums = [d for n, d in docs if n == "stream_datum"]
    assert {(d["indices"]["start"], d["indices"]["stop"]) for d in datums} == {(0, 1), (1, 2)}
    sent = sim.host.call(lambda: sim.instrument.sent)
    with written(tmp_path) as file:
        counts = file["hit_count"][:]
        assert counts[-1] == sent and file["lost"][:].tolist() == [0, 0]  # in = on disk
        assert file["count_map"][:].sum(axis=(1, 2)).tolist() == counts.tolist()
        assert file["hits/x"].shape == (counts.sum(),)
        assert file["mean_tot"][:] == pytest.approx([44.0, 44.0])  # 2200 e- at 50 e- per count
        assert 60_000 < file["rate"][0] < 140_000  # 100 kHz flat field
        assert str(hdf5plugin.BLOSC_ID) in file["hits/x"]._filters  # Blosc/LZ4, the default


def test_an_unknown_codec_is_refused_before_the_readout_is_touched() -> None:
    with pytest.raises(HitFileError, match=r"compression 'zstd'; choose one of blosc-lz4, lzf"):
        Timepix3("tcp://127.0.0.1:9", name="tpx", compression="zstd")


def test_bad_dac_and_trim_requests_are_refused_before_sending(
    RE: RunEngine, det: Timepix3, sim: RunningSim
) -> None:
    fails_with(RE, bps.mv(det.threshold, 600), Timepix3Error, r"Vthreshold_fine = 600.*0\.\.511")
    assert sim.host.call(lambda: sim.instrument.dacs["Vthreshold_fine"]) == 100
    wrong = np.zeros((128, 256), int)
    fails_with(RE, bps.mv(det.trims, wrong), Timepix3Error, r"256 x 256.*got shape \(128, 256\)")
    trims = np.arange(65536).reshape(256, 256) % 16
    RE(bps.mv(det.trims, trims))
    assert (run(RE, det.trims.get) == trims).all()


def test_a_stream_that_stops_fails_the_run_and_leaves_a_readable_file(
    RE: RunEngine, det: Timepix3, sim: RunningSim, tmp_path: Path
) -> None:
    RE(bps.mv(det.shutter_time, 2.0))
    sim.host.call(sim.instrument.stall)
    fails_with(RE, bp.count([det]), DataStreamStopped, "stopped in the middle of a frame")
    with written(tmp_path) as file:
        assert file["hit_count"].shape == (1,)
        assert file["hits/x"].shape == (file["hit_count"][0],)


def test_unknown_packets_are_counted_not_decoded(
    RE: RunEngine, det: Timepix3, sim: RunningSim, tmp_path: Path
) -> None:
    sim.host.call(lambda: setattr(sim.instrument.matrix, "source", Source()))
    RE(bp.count([det]))  # stages: the data stream is open from here on
    sim.host.call(lambda: sim.instrument.inject(0x2 << 60 | 0x1234))
    RE(bp.count([det]))
    assert run(RE, det.unknown_packets.get_value) == 1
    assert run(RE, det.last_hit_count.get_value) == 0
