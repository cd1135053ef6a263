"""`ModuleSlot` on a simulated CAEN channel: limits before any write, bias through the channel."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import bluesky.plans as bp
import pytest
from bluesky import RunEngine
from helpers import run
from ophyd_async.core import init_devices

from teststand.config import ModuleConfig, SensorType
from teststand.devices.caen import CaenHV
from teststand.sim.runner import RunningSim, start_simulator
from teststand.stand.slot import BiasLimitError, ModuleSlot


@pytest.fixture
def sim() -> Iterator[RunningSim]:
    simulator = start_simulator("caen-dt8033", speed=50)
    yield simulator
    simulator.stop()


def make_slots(hv: CaenHV) -> tuple[ModuleSlot, ModuleSlot]:
    planar = ModuleConfig(id="20UPGM22110011", sensor=SensorType.PLANAR)
    occupied = ModuleSlot(1, hv.channels[0], planar, max_bias=200.0, name="slot1")
    empty = ModuleSlot(2, hv.channels[1], None, max_bias=0.0, name="slot2")
    return occupied, empty


def test_limits_are_checked_before_any_write(RE: RunEngine, sim: RunningSim) -> None:
    with init_devices():
        hv = CaenHV(f"serial://{sim.address}")
        slot1, slot2 = make_slots(hv)
    with pytest.raises(BiasLimitError, match=r"slot1: 250 V is outside 0\.\.200\.0 V"):
        run(RE, lambda: slot1.set(250))
    with pytest.raises(BiasLimitError, match="slot2 holds no module"):
        run(RE, lambda: slot2.set(10))
    # nothing was written: the supply's set points are untouched
    assert run(RE, hv.channels[0].setpoint.get_value) == 0
    assert run(RE, hv.channels[1].setpoint.get_value) == 0
    run(RE, hv.close)


def test_bias_ramps_the_channel_and_reads_back(RE: RunEngine, sim: RunningSim) -> None:
    with init_devices():
        hv = CaenHV(f"serial://{sim.address}")
        slot1, _ = make_slots(hv)
    run(RE, lambda: hv.channels[0].rate_up.set(200))
    run(RE, lambda: hv.channels[0].on())
    run(RE, lambda: slot1.set(120))
    assert abs(run(RE, slot1.bias.get_value) - 120) < 2
    documents: list[tuple[str, dict[str, Any]]] = []
    RE(bp.count([slot1]), lambda name, doc: documents.append((name, doc)))
    (descriptor,) = [doc for name, doc in documents if name == "descriptor"]
    assert descriptor["data_keys"]["slot1"]["units"] == "V"
    assert descriptor["data_keys"]["slot1-leakage_current"]["units"] == "A"
    configuration = descriptor["configuration"]["slot1"]["data"]
    assert configuration["slot1-module_id"] == "20UPGM22110011"
    assert configuration["slot1-sensor_area"] == pytest.approx(15.92)  # an outer quad (L2)
    run(RE, lambda: hv.channels[0].off())
    run(RE, hv.close)


def test_dry_run_in_mock_mode(RE: RunEngine) -> None:
    with init_devices(mock=True):
        hv = CaenHV("serial:///dev/ttyUSB-absent")
        slot1, _ = make_slots(hv)
    run(RE, lambda: slot1.set(150))
    assert run(RE, hv.channels[0].voltage.get_value) == 150
    with pytest.raises(BiasLimitError):
        run(RE, lambda: slot1.set(201))
