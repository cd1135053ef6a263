"""The coldbox device against the simulator over a real pty, in a RunEngine."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import bluesky.plans as bp
import pytest
from bluesky import RunEngine
from helpers import run
from ophyd_async.core import init_devices

from teststand.devices._settle import SettleTimeout
from teststand.devices.coldbox import ColdBox, ColdBoxError, dew_point
from teststand.errors import InstrumentRefused, TransportTimeout
from teststand.sim.runner import RunningSim, start_simulator

FAST = 500  # the plates' 60 s time constant passes in 0.12 s


@pytest.fixture
def sim() -> Iterator[RunningSim]:
    with start_simulator("coldbox", speed=FAST) as simulator:
        yield simulator


@pytest.fixture
def coldbox(RE: RunEngine, sim: RunningSim) -> Iterator[ColdBox]:
    with init_devices():
        coldbox = ColdBox(f"serial://{sim.address}", settle=0.3)
    coldbox.movable_logic.poll = 0.02
    yield coldbox
    run(RE, coldbox.close)


def test_dew_point_is_the_magnus_formula() -> None:
    assert dew_point(20.0, 50.0) == pytest.approx(9.26, abs=0.01)
    assert dew_point(-20.0, 100.0) == pytest.approx(-20.0)
    assert -80 < dew_point(20.0, 0.0) < -79  # a 0.00 % reading is bounded, not -inf


def test_readings_describe_and_units(RE: RunEngine, coldbox: ColdBox, sim: RunningSim) -> None:
    description = run(RE, coldbox.describe)
    units = {key.removeprefix("coldbox-"): info.get("units") for key, info in description.items()}
    assert units == {
        "coldbox": "degC",
        "setpoint": "degC",
        "air_temperature": "degC",
        "water_temperature": "degC",
        "relative_humidity": "%",
        "dew_point": "degC",
        "dew_point_margin": "K",
        "lid_closed": None,
        "interlock_ok": None,
        "dry_air_flow": "l/min",
        "dry_air": None,
        "tec_power": None,
    }
    assert coldbox.hints == {"fields": ["coldbox"]}
    values = {key.removeprefix("coldbox-"): r["value"] for key, r in run(RE, coldbox.read).items()}
    assert values["coldbox"] == pytest.approx(sim.instrument.temperature, abs=0.01)
    assert values["relative_humidity"] == pytest.approx(sim.instrument.humidity, abs=0.01)
    # computed here from air temperature and RH, it agrees with the box's own DP
    assert values["dew_point"] == pytest.approx(sim.instrument.dew_point, abs=0.05)
    assert values["dew_point_margin"] == pytest.approx(
        values["coldbox"] - values["dew_point"], abs=0.01
    )
    assert values["lid_closed"] is True
    assert values["interlock_ok"] is True
    assert (values["dry_air"], values["dry_air_flow"], values["tec_power"]) == (False, 0.0, False)
    configuration = run(RE, coldbox.describe_configuration)
    assert {k: v.get("units") for k, v in configuration.items()} == {
        "coldbox-tolerance": "K",
        "coldbox-settle_time": "s",
        "coldbox-rate": "K/min",
        "coldbox-timeout_margin": "s",
    }


def test_whole_read_is_one_round_trip(RE: RunEngine, coldbox: ColdBox, sim: RunningSim) -> None:
    before = sim.server.commands
    assert len(run(RE, coldbox.read)) == 12
    assert sim.server.commands - before == 1


def test_dry_air_flush_lowers_the_dew_point(
    RE: RunEngine, coldbox: ColdBox, sim: RunningSim
) -> None:
    wet = run(RE, coldbox.dew_point.get_value)
    run(RE, lambda: coldbox.dry_air.set(True))
    assert run(RE, coldbox.dry_air_flow.get_value) == 20.0
    time.sleep(0.5)  # 250 s simulated: two flush time constants
    assert run(RE, coldbox.dew_point.get_value) < wet - 20
    run(RE, lambda: coldbox.dry_air.set(False))
    assert run(RE, coldbox.dry_air_flow.get_value) == 0.0


def test_move_is_done_after_the_settle_time_not_at_first_touch(
    RE: RunEngine, coldbox: ColdBox, sim: RunningSim
) -> None:
    # A 3 K band is first touched after ~0.28 s; holding it 0.5 s brings the plates within a
    # small fraction of a kelvin, which a first-touch move never would.
    run(RE, lambda: coldbox.tolerance.set(3.0))
    run(RE, lambda: coldbox.settle_time.set(0.5))
    run(RE, lambda: coldbox.tec_power.set(True))
    started = time.monotonic()
    run(RE, lambda: coldbox.set(-10.0))
    assert time.monotonic() - started >= 0.5
    assert abs(sim.instrument.temperature + 10.0) < 1.0
    assert run(RE, lambda: coldbox.client.plate_temperature(3)) == pytest.approx(-10, abs=1)
    assert run(RE, coldbox.setpoint.get_value) == -10.0


def test_timeout_is_derived_from_the_rate(RE: RunEngine) -> None:
    with start_simulator("coldbox", speed=1) as slow:
        with init_devices():
            coldbox = ColdBox(f"serial://{slow.address}", settle=0.3, rate=10.0, margin=300)
        timeout = run(RE, lambda: coldbox.movable_logic.calculate_timeout(20.0, -10.0))
        assert timeout == pytest.approx(30 / (10.0 / 60) + 0.3 + 300)
        # An optimistic 600 K/min allows 1 s + 0.3 s + 0.2 s; the plates need minutes.
        run(RE, lambda: coldbox.rate.set(600.0))
        run(RE, lambda: coldbox.timeout_margin.set(0.2))
        run(RE, lambda: coldbox.tec_power.set(True))
        with pytest.raises(SettleTimeout, match=r"coldbox: 10.0 °C not reached .* 1.5 s allowed"):
            run(RE, lambda: coldbox.set(10.0))
        run(RE, coldbox.close)


def test_open_lid_stops_moves_and_refuses_tec_power(
    RE: RunEngine, coldbox: ColdBox, sim: RunningSim
) -> None:
    with pytest.raises(ColdBoxError, match=r"coldbox: cannot set -5.0 °C: TEC power is off"):
        run(RE, lambda: coldbox.set(-5.0))
    with pytest.raises(ColdBoxError, match=r"outside the TEC range -40..40"):
        run(RE, lambda: coldbox.set(-50.0))
    sim.instrument.open_lid()  # type: ignore[attr-defined]
    assert run(RE, coldbox.lid_closed.get_value) is False
    with pytest.raises(InstrumentRefused, match="interlock tripped: close the lid"):
        run(RE, lambda: coldbox.tec_power.set(True))
    with pytest.raises(ColdBoxError, match="the lid is open"):
        run(RE, lambda: coldbox.set(-5.0))


def test_local_control_gives_a_clear_error(
    RE: RunEngine, coldbox: ColdBox, sim: RunningSim
) -> None:
    sim.set_faults("local")
    with pytest.raises(InstrumentRefused, match=r"^coldbox .*LOCAL control; switch it to remote"):
        run(RE, lambda: coldbox.dry_air.set(True))


def test_hung_coldbox_times_out_naming_the_device(RE: RunEngine, sim: RunningSim) -> None:
    with init_devices():
        coldbox = ColdBox(f"serial://{sim.address}?timeout=0.1&attempts=2&backoff=0")
    sim.set_faults("hang")
    with pytest.raises(TransportTimeout, match=r"^coldbox \(serial://.*no reply"):
        run(RE, coldbox.read)
    run(RE, coldbox.close)


def test_count_and_scan_in_a_run_engine(RE: RunEngine) -> None:
    with init_devices():
        coldbox = ColdBox(f"sim://coldbox?speed={FAST}", tolerance=1.0, settle=0.05)
    coldbox.movable_logic.poll = 0.02
    documents: list[tuple[str, dict[str, Any]]] = []
    RE(bp.count([coldbox], num=2), lambda name, doc: documents.append((name, doc)))
    assert len([doc for name, doc in documents if name == "event"]) == 2
    run(RE, lambda: coldbox.tec_power.set(True))
    documents.clear()
    RE(bp.scan([], coldbox, 10, -10, 3), lambda name, doc: documents.append((name, doc)))
    temperatures = [doc["data"]["coldbox"] for name, doc in documents if name == "event"]
    assert temperatures == pytest.approx([10, 0, -10], abs=1)
    run(RE, coldbox.close)


def test_mock_mode_needs_no_instrument(RE: RunEngine) -> None:
    with init_devices(mock=True):
        coldbox = ColdBox("serial:///dev/ttyUSB-not-here")
    RE(bp.count([coldbox]))
    run(RE, lambda: coldbox.set(-15.0))
    assert run(RE, coldbox.temperature.get_value) == -15.0
