"""The Lauda chiller device against the simulator over a real pty, in a RunEngine."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import bluesky.plans as bp
import pytest
from bluesky import RunEngine
from helpers import run
from ophyd_async.core import init_devices

from teststand.devices._settle import SettleTimeout
from teststand.devices.lauda import CoolingMode, LaudaChiller, LaudaError
from teststand.errors import InstrumentRefused, TransportTimeout
from teststand.sim.runner import RunningSim, start_simulator

FAST = 1000  # the bath's 300 s time constant passes in 0.3 s


@pytest.fixture
def sim() -> Iterator[RunningSim]:
    with start_simulator("lauda", speed=FAST) as simulator:
        yield simulator


@pytest.fixture
def chiller(RE: RunEngine, sim: RunningSim) -> Iterator[LaudaChiller]:
    with init_devices():
        chiller = LaudaChiller(f"serial://{sim.address}", settle=0.3)
    chiller.movable_logic.poll = 0.02
    yield chiller
    run(RE, chiller.close)


def test_readings_describe_and_units(RE: RunEngine, chiller: LaudaChiller) -> None:
    description = run(RE, chiller.describe)
    assert set(description) == {"chiller", "chiller-setpoint", "chiller-running", "chiller-status"}
    assert description["chiller"]["units"] == "degC"
    assert description["chiller-setpoint"]["units"] == "degC"
    reading = run(RE, chiller.read)
    assert reading["chiller"]["value"] == pytest.approx(20.0)
    assert reading["chiller-running"]["value"] is False
    assert reading["chiller-status"]["value"] == "OK"
    assert chiller.hints == {"fields": ["chiller"]}
    configuration = run(RE, chiller.read_configuration)
    values = {key.removeprefix("chiller-"): r["value"] for key, r in configuration.items()}
    assert values["pump_level"] == 3
    assert values["cooling_mode"] == CoolingMode.AUTO
    assert (values["lower_limit"], values["upper_limit"]) == (-90.0, 200.0)
    assert values["model"] == "RP 890"
    assert (values["tolerance"], values["settle_time"]) == (0.2, 0.3)
    units = {
        key.removeprefix("chiller-"): key_info.get("units")
        for key, key_info in run(RE, chiller.describe_configuration).items()
    }
    assert units["tolerance"] == "K"
    assert units["rate"] == "K/min"
    assert units["pump_level"] == "1"
    for key, info in {**description, **run(RE, chiller.describe_configuration)}.items():
        if info["dtype"] in ("number", "integer"):
            assert info.get("units"), f"{key} has no units"


def test_whole_read_costs_one_query_per_value(
    RE: RunEngine, chiller: LaudaChiller, sim: RunningSim
) -> None:
    before = sim.server.commands
    run(RE, chiller.read)
    assert sim.server.commands - before == 4  # IN_PV_00, IN_SP_00, IN_MODE_02, STAT


def test_settings_round_trip(RE: RunEngine, chiller: LaudaChiller, sim: RunningSim) -> None:
    run(RE, lambda: chiller.pump_level.set(5))
    run(RE, lambda: chiller.cooling_mode.set(CoolingMode.ON))
    run(RE, chiller.start)
    snapshot = sim.instrument.snapshot()
    assert (snapshot["pump"], snapshot["cooling"], snapshot["running"]) == (5, 1, True)
    assert run(RE, chiller.running.get_value) is True
    run(RE, lambda: chiller.running.set(False))
    assert sim.instrument.snapshot()["running"] is False


def test_move_is_done_after_the_settle_time_not_at_first_touch(
    RE: RunEngine, chiller: LaudaChiller, sim: RunningSim
) -> None:
    # With a 3 K band the bath first touches it after ~0.36 s; holding it for 0.8 s brings the
    # bath within a fraction of a kelvin of the target, which a first-touch move never would.
    run(RE, lambda: chiller.tolerance.set(3.0))
    run(RE, lambda: chiller.settle_time.set(0.8))
    run(RE, chiller.start)
    started = time.monotonic()
    run(RE, lambda: chiller.set(10.0))
    assert time.monotonic() - started >= 0.8
    assert sim.instrument.snapshot()["setpoint"] == 10.0
    assert abs(sim.instrument.temperature - 10.0) < 1.0
    assert run(RE, chiller.locate) == {"setpoint": 10.0, "readback": pytest.approx(10.0, abs=1)}


def test_timeout_is_derived_from_the_rate(RE: RunEngine) -> None:
    with start_simulator("lauda", speed=1) as slow:
        with init_devices():
            chiller = LaudaChiller(f"serial://{slow.address}", settle=0.3, rate=1.0, margin=600)
        timeout = run(RE, lambda: chiller.movable_logic.calculate_timeout(20.0, 10.0))
        assert timeout == pytest.approx(10 / (1.0 / 60) + 0.3 + 600)
        # An optimistic 600 K/min allows 1 s + 0.3 s + 0.2 s; a real bath needs minutes.
        run(RE, lambda: chiller.rate.set(600.0))
        run(RE, lambda: chiller.timeout_margin.set(0.2))
        run(RE, chiller.start)
        started = time.monotonic()
        with pytest.raises(SettleTimeout, match=r"chiller: 10.0 °C not reached .* 1.5 s allowed"):
            run(RE, lambda: chiller.set(10.0))
        assert 1.4 < time.monotonic() - started < 3
        run(RE, chiller.close)


def test_moves_refused_in_standby_and_outside_the_limits(
    RE: RunEngine, chiller: LaudaChiller, sim: RunningSim
) -> None:
    with pytest.raises(LaudaError, match="chiller is in standby: start it"):
        run(RE, lambda: chiller.set(10.0))
    run(RE, lambda: chiller.lower_limit.set(0.0))
    run(RE, chiller.start)
    with pytest.raises(LaudaError, match=r"chiller: -5.0 °C is outside .* 0.0..200.0"):
        run(RE, lambda: chiller.set(-5.0))
    assert sim.instrument.snapshot()["setpoint"] == 20.0  # nothing written


def test_local_control_gives_a_clear_error(
    RE: RunEngine, chiller: LaudaChiller, sim: RunningSim
) -> None:
    sim.set_faults("local")
    with pytest.raises(InstrumentRefused, match=r"chiller .*ERR_36.*LOCAL control") as info:
        run(RE, lambda: chiller.setpoint.set(5.0))
    assert info.value.code == "ERR_36"
    assert info.value.instrument == "chiller"


def test_hung_chiller_times_out_naming_the_device(RE: RunEngine, sim: RunningSim) -> None:
    with init_devices():
        chiller = LaudaChiller(f"serial://{sim.address}?timeout=0.1&attempts=2&backoff=0")
    sim.set_faults("hang")
    with pytest.raises(TransportTimeout, match=r"^chiller \(serial://.*no reply"):
        run(RE, chiller.temperature.get_value)
    run(RE, chiller.close)


def test_rs485_address_prefix(RE: RunEngine) -> None:
    with start_simulator("lauda", speed=FAST, address=5) as bus:
        with init_devices():
            chiller = LaudaChiller(f"serial://{bus.address}", address=5, settle=0)
        assert run(RE, chiller.temperature.get_value) == pytest.approx(20.0)
        run(RE, lambda: chiller.pump_level.set(7))
        assert bus.instrument.snapshot()["pump"] == 7
        run(RE, chiller.close)


def test_count_and_scan_in_a_run_engine(RE: RunEngine) -> None:
    with init_devices():
        chiller = LaudaChiller(f"sim://lauda?speed={FAST}", tolerance=1.0, settle=0.05)
    chiller.movable_logic.poll = 0.02
    documents: list[tuple[str, dict[str, Any]]] = []
    RE(bp.count([chiller], num=2), lambda name, doc: documents.append((name, doc)))
    assert len([doc for name, doc in documents if name == "event"]) == 2
    run(RE, chiller.start)
    documents.clear()
    RE(bp.scan([], chiller, 18, 14, 3), lambda name, doc: documents.append((name, doc)))
    temperatures = [doc["data"]["chiller"] for name, doc in documents if name == "event"]
    assert temperatures == pytest.approx([18, 16, 14], abs=1)
    run(RE, chiller.close)


def test_mock_mode_needs_no_instrument(RE: RunEngine) -> None:
    with init_devices(mock=True):
        chiller = LaudaChiller("serial:///dev/ttyUSB-not-here")
    RE(bp.count([chiller]))
    run(RE, lambda: chiller.set(-15.0))
    assert run(RE, chiller.temperature.get_value) == -15.0


def test_a_monitored_reading_that_fails_is_logged_once_until_it_reads_again(
    RE: RunEngine, chiller: LaudaChiller, sim: RunningSim, caplog: pytest.LogCaptureFixture
) -> None:
    """An unplugged cable under a subscription: one error, not one per poll, then recovery."""
    caplog.set_level(logging.INFO, logger="teststand.devices")
    readings: list[Any] = []

    async def subscribe() -> None:
        chiller.temperature.subscribe_reading(readings.append)

    async def unsubscribe() -> None:
        chiller.temperature.clear_sub(readings.append)

    run(RE, subscribe)
    try:
        deadline = time.monotonic() + 10
        while not readings and time.monotonic() < deadline:
            time.sleep(0.05)
        sim.set_faults("replug=3")
        sim.unplug()  # plugged back in 3 s later; several reads fail meanwhile
        time.sleep(2.5)
        failures = [r for r in caplog.records if "monitor read failed" in r.getMessage()]
        count = len(readings)
        while len(readings) == count and time.monotonic() < deadline + 20:
            time.sleep(0.05)
    finally:
        run(RE, unsubscribe)
    assert len(failures) == 1 and "logged once" in failures[0].getMessage()
    assert len(readings) > count
    assert any("monitor reads again" in r.getMessage() for r in caplog.records)
