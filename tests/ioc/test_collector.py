"""Collectors and processing devices, each a process of its own, on the session's served stand.

The collector records the stand's PVs during an IV scan over CA; its history PVs, its HDF5
export and its Tiled run hold the same values and times; a plan's `Collector` flyer puts the
history in that plan's run; the collector and a processing device are killed and started again
(by the factory) while the stand serves, and nothing else notices.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import h5py
import numpy as np
import pytest
from bluesky import RunEngine
from caproto import ErrorResponseReceived
from caproto.sync.client import read, write
from conftest import PREFIX, SIDE_PORTS, TESTSTAND, Ioc, SideServer, wait_for
from ophyd_async.plan_stubs import ensure_connected

from teststand.collect.device import Collector
from teststand.collect.export import stream_key
from teststand.plans.iv import iv_scan
from teststand.stand import TestStand
from teststand.storage.embedded import EmbeddedServer
from teststand.storage.runwriter import write_run

COL = "TSICOL:"
RECORDED = [f"{PREFIX}SLOT1:BIAS", f"{PREFIX}SLOT1:LEAKAGE_CURRENT", f"{PREFIX}COLDBOX:DEW_POINT"]
UNKNOWN = "TSI:NO:SUCH:PV"


def get(pv: str, data_type: str | None = None) -> Any:
    return read(pv, data_type=data_type, timeout=5, repeater=False)


def text(pv: str) -> str:
    return bytes(get(pv).data).rstrip(b"\0").decode()


def array(pv: str) -> np.ndarray:  # type: ignore[type-arg]
    return np.asarray(get(pv).data, dtype=float)


def put(pv: str, value: Any) -> None:
    data = value.encode() + b"\0" if isinstance(value, str) else value
    write(pv, data, notify=True, timeout=30, repeater=False)


#: The first test may start the session's simulators and IOC, and Tiled, on a loaded machine.
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def tiled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    server = EmbeddedServer(tmp_path_factory.mktemp("tiled"))  # starts; ready when waited for
    yield server
    server.close(timeout=3)


@pytest.fixture(scope="module")
def collector(tiled: EmbeddedServer, ioc: Ioc) -> Iterator[SideServer]:
    tiled.wait_ready(180)  # Tiled started while the IOC did
    pvs = [arg for pv in [*RECORDED, UNKNOWN] for arg in ("--pv", pv)]
    command = [TESTSTAND, "collector", "serve", "tsicol", "--prefix", COL, *pvs]
    command += ["--length", "1000", "--publish", "0.1", "--interfaces", "127.0.0.1"]
    command += ["--tiled", tiled.url, "--api-key-env", "COLLECT_TEST_KEY"]
    process = SideServer(command, SIDE_PORTS[0], COLLECT_TEST_KEY=tiled.api_key)
    yield process
    process.stop()


def test_collector_records_an_iv_scan_and_exports_the_same_history(
    RE: RunEngine, served: TestStand, collector: Any, tiled: EmbeddedServer, tmp_path: Path
) -> None:
    assert get(f"{COL}STATE").data[0] == b"RECORDING"
    assert [text(f"{COL}{n}:NAME") for n in (1, 2, 3, 4)] == [*RECORDED, UNKNOWN]
    wait_for(lambda: UNKNOWN in text(f"{COL}MSG"), 20, "the unknown PV named")
    assert "recording the other PVs" in text(f"{COL}MSG")
    RE(iv_scan(served, [1], stop=20, step=10, settle=0))
    wait_for(lambda: array(f"{COL}1:V").max() >= 19.0, 20, "20 V in the bias history")
    put(f"{COL}CMD:STOP", 1)
    assert get(f"{COL}STATE").data[0] == b"IDLE"
    assert get(f"{COL}4:NSAMPLES").data[0] == 0 and get(f"{COL}4:CONNECTED").data[0] == b"Off"
    histories = {
        pv: (array(f"{COL}{n}:T"), array(f"{COL}{n}:V")) for n, pv in enumerate(RECORDED, 1)
    }
    for times, values in histories.values():
        assert len(times) == len(values) > 5
        assert np.all(np.diff(times) >= 0)
    bias = histories[RECORDED[0]][1]
    for step in (10.0, 20.0):  # every step of the scan
        assert np.any(np.abs(bias - step) < 0.5), f"no {step} V in the bias history"
    assert get(f"{COL}1:V", "control").metadata.units == b"V"
    assert get(f"{COL}NSAMPLES").data[0] == sum(len(t) for t, _ in histories.values())

    h5 = tmp_path / "iv.h5"
    put(f"{COL}CMD:EXPORT", str(h5))
    assert text(f"{COL}EXPORTED") == str(h5)
    with h5py.File(h5) as file:
        for pv, (times, values) in histories.items():
            assert np.array_equal(file[pv]["time"], times)
            assert np.array_equal(file[pv]["value"], values)
        assert file[RECORDED[0]].attrs["units"] == "V"
        assert file[RECORDED[1]].attrs["units"] == "A"
        assert file[UNKNOWN].shape == (0,)
    with pytest.raises(ErrorResponseReceived):  # an existing file is never overwritten
        put(f"{COL}CMD:EXPORT", str(h5))
    assert "exists" in text(f"{COL}MSG")

    put(f"{COL}CMD:EXPORT_TILED", 1)
    run = tiled.client()[text(f"{COL}EXPORTED")]
    assert run.metadata["start"]["plan_name"] == "collector"
    assert run.metadata["start"]["collector"]["pvs"] == [*RECORDED, UNKNOWN]
    for pv, (times, values) in histories.items():
        table = run[stream_key(pv)].read()
        assert np.array_equal(np.asarray(table[stream_key(pv)]), values)
        assert np.array_equal(np.asarray(table["time"]), times)
    put(f"{COL}CMD:CLEAR", 1)
    put(f"{COL}CMD:START", 1)
    assert get(f"{COL}1:NSAMPLES").data[0] < len(bias)


def test_a_plan_with_a_collector_flyer_gets_its_streams_in_tiled(
    RE: RunEngine, served: TestStand, collector: Any, tiled: EmbeddedServer
) -> None:
    flyer = Collector(COL, name="box")
    RE(ensure_connected(flyer))
    documents: list[tuple[str, dict[str, Any]]] = []

    @bpp.run_decorator(md={"test": "collector-flyer"})
    def plan() -> Any:
        yield from bps.kickoff(flyer, wait=True)
        yield from bps.mv(served.slots[1].hv_channel.switched_on, True)  # type: ignore[attr-defined]
        yield from bps.mv(served.slots[1], 15.0)
        yield from bps.sleep(0.5)
        yield from bps.mv(served.slots[1], 0.0)
        yield from bps.complete(flyer, wait=True)
        yield from bps.collect(flyer)

    RE(plan(), lambda name, doc: documents.append((name, doc)))
    write_run(tiled.client(), documents)
    run = tiled.client()[documents[0][1]["uid"]]
    stream = f"box_{stream_key(RECORDED[0])}"
    bias = np.asarray(run[stream].read()[stream])
    assert bias.max() == pytest.approx(15.0, abs=0.5) and bias[-1] == pytest.approx(0.0, abs=0.5)
    descriptor = next(d for n, d in documents if n == "descriptor" and d["name"] == stream)
    assert descriptor["data_keys"][stream]["units"] == "V"
    assert descriptor["data_keys"][stream]["source"] == f"ca://{RECORDED[0]}"
