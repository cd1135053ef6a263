"""The Keithley SMU device against its simulator over a real pty, in a RunEngine."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import bluesky.plans as bp
import pytest
from bluesky import RunEngine
from helpers import run
from ophyd_async.core import init_devices

from teststand.devices.keithley import Keithley2410, KeithleyError, KeithleyValueError
from teststand.devices.scpi import ScpiError
from teststand.errors import TransportTimeout
from teststand.sim.runner import RunningSim, start_simulator


@pytest.fixture
def sim() -> Iterator[RunningSim]:
    simulator = start_simulator("keithley2410", breakdown=300.0, leakage=2e-6)
    yield simulator
    simulator.stop()


@pytest.fixture
def smu(RE: RunEngine, sim: RunningSim) -> Iterator[Keithley2410]:
    with init_devices():
        smu = Keithley2410(f"serial://{sim.address}")
    run(RE, lambda: smu.configure_iv(compliance=100e-6, nplc=1))
    run(RE, lambda: smu.on())
    yield smu
    run(RE, lambda: smu.close())


class Commands(logging.Handler):
    """The command lines the transport sends, from its debug log."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(str(record.args[1]) if record.args else "")  # type: ignore[index]

    def count(self, prefix: str) -> int:
        return sum(line.startswith(prefix) for line in self.lines)


@pytest.fixture
def sent() -> Iterator[Commands]:
    logger = logging.getLogger("teststand.transport")
    handler, level = Commands(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_configuration_readings_describe_and_units(RE: RunEngine, smu: Keithley2410) -> None:
    configuration = run(RE, lambda: smu.read_configuration())
    value = {key.removeprefix("smu-"): reading["value"] for key, reading in configuration.items()}
    assert value["compliance"] == pytest.approx(100e-6)
    assert value["nplc"] == 1
    assert value["auto_range"] is True
    assert value["source_function"] == "VOLT"
    assert value["sense_function"] == "CURR:DC"
    assert value["output"] is True
    run(RE, lambda: smu.trigger())
    reading = run(RE, lambda: smu.read())
    assert set(reading) == {"smu", "smu-current", "smu-in_compliance"}
    assert reading["smu"]["value"] == 0
    assert reading["smu-in_compliance"]["value"] is False
    keys = {**run(RE, lambda: smu.describe()), **run(RE, lambda: smu.describe_configuration())}
    units = {key: datakey.get("units") for key, datakey in keys.items()}
    assert units["smu"] == "V"
    assert units["smu-current"] == "A"
    assert units["smu-compliance"] == "A"
    assert units["smu-voltage_range"] == "V"
    assert units["smu-step"] == "V"
    assert units["smu-step_pause"] == "s"
    numeric = [key for key, datakey in keys.items() if datakey["dtype"] in ("number", "integer")]
    assert numeric and all(units[key] for key in numeric)


def test_voltage_move_within_tolerance(RE: RunEngine, smu: Keithley2410) -> None:
    run(RE, lambda: smu.set(120))
    assert abs(run(RE, lambda: smu.voltage.get_value()) - 120) <= smu.tolerance
    assert run(RE, lambda: smu.setpoint.get_value()) == pytest.approx(120)
    assert 1e-7 < run(RE, lambda: smu.current.get_value()) < 100e-6
    run(RE, lambda: smu.set(-5))
    assert run(RE, lambda: smu.voltage.get_value()) == pytest.approx(-5, abs=0.05)
    with pytest.raises(KeithleyValueError, match="1100"):
        run(RE, lambda: smu.set(1500))


def test_stepped_move_writes_each_step(RE: RunEngine, smu: Keithley2410, sent: Commands) -> None:
    run(RE, lambda: smu.step.set(25))
    run(RE, lambda: smu.step_pause.set(0.01))
    assert run(RE, lambda: smu.movable_logic.calculate_timeout(0, 100)) == pytest.approx(
        4 * 1.01 + 5
    )
    run(RE, lambda: smu.set(100))
    levels = [line for line in sent.lines if line.startswith(":SOUR:VOLT ")]
    assert levels == [":SOUR:VOLT 25", ":SOUR:VOLT 50", ":SOUR:VOLT 75", ":SOUR:VOLT 100"]
    assert run(RE, lambda: smu.voltage.get_value()) == pytest.approx(100, abs=0.05)


def test_compliance_flag_ends_the_move(RE: RunEngine, smu: Keithley2410) -> None:
    run(RE, lambda: smu.compliance.set(10e-6))
    run(RE, lambda: smu.set(400))  # beyond breakdown (300 V): the load pulls it into compliance
    assert run(RE, lambda: smu.in_compliance.get_value()) is True
    assert run(RE, lambda: smu.current.get_value()) == pytest.approx(10e-6, rel=1e-3)
    assert run(RE, lambda: smu.voltage.get_value()) < 400
    run(RE, lambda: smu.set(50))
    assert run(RE, lambda: smu.in_compliance.get_value()) is False


def test_refused_setting_surfaces_the_error_queue(RE: RunEngine, smu: Keithley2410) -> None:
    run(RE, lambda: smu.set(100))
    with pytest.raises(ScpiError, match=r"-221,\"Settings conflict\"") as info:
        run(RE, lambda: smu.voltage_range.set(2))  # a 2 V range cannot hold 100 V
    assert info.value.codes == (-221,)
    assert "smu (serial://" in str(info.value)
    # every queued error is listed, in order
    with pytest.raises(ScpiError, match="2 errors") as info:
        run(RE, lambda: smu.client.configure(":SOUR:VOLT:BOGUS 1", ":SENS:CURR:NPLC 100"))
    assert info.value.codes == (-113, -222)
    assert run(RE, lambda: smu.client.read_errors()) == []


def test_configure_iv_is_refused_with_the_output_on(RE: RunEngine, smu: Keithley2410) -> None:
    with pytest.raises(KeithleyError, match="switch the output off first"):
        run(RE, lambda: smu.configure_iv(compliance=1e-5))
    with pytest.raises(KeithleyValueError, match=r"compliance 2\.0 A"):
        run(RE, lambda: smu.configure_iv(compliance=2.0))


def test_reading_with_the_output_off_says_so(RE: RunEngine, smu: Keithley2410) -> None:
    run(RE, lambda: smu.off())
    with pytest.raises(KeithleyError, match=r"output is off.*on\(\)"):
        run(RE, lambda: smu.trigger())
    with pytest.raises(KeithleyError, match="output is off"):
        run(RE, lambda: smu.set(10))


def test_local_control_gives_a_clear_error(
    RE: RunEngine, smu: Keithley2410, sim: RunningSim
) -> None:
    sim.set_faults("local")
    with pytest.raises(ScpiError, match="LOCAL") as info:
        run(RE, lambda: smu.compliance.set(20e-6))
    assert info.value.codes == (-221,)
    with pytest.raises(ScpiError, match="LOCAL"):
        run(RE, lambda: smu.set(30))
    # readings still work under LOCAL control
    run(RE, lambda: smu.trigger())
    assert run(RE, lambda: smu.voltage.get_value()) == 0


def test_hung_instrument_times_out_naming_the_device(RE: RunEngine, sim: RunningSim) -> None:
    with init_devices():
        bias_smu = Keithley2410(f"serial://{sim.address}?timeout=0.2&attempts=1")
    sim.set_faults("hang")
    with pytest.raises(TransportTimeout, match="bias_smu"):
        run(RE, lambda: bias_smu.read_configuration())
    run(RE, lambda: bias_smu.close())


def test_2450_dialect(RE: RunEngine, sent: Commands) -> None:
    with start_simulator("keithley2410", dialect="2450", breakdown=150.0) as sim:
        with init_devices():
            smu2450 = Keithley2410(f"serial://{sim.address}", dialect="2450")
        run(RE, lambda: smu2450.configure_iv(compliance=50e-6, voltage_range=200))
        assert ":SOUR:VOLT:ILIM 5e-05" in sent.lines
        configuration = run(RE, lambda: smu2450.read_configuration())
        assert configuration["smu2450-compliance"]["value"] == pytest.approx(50e-6)
        assert configuration["smu2450-voltage_range"]["value"] == 200
        assert configuration["smu2450-auto_range"]["value"] is False
        run(RE, lambda: smu2450.on())
        run(RE, lambda: smu2450.set(100))
        reading = run(RE, lambda: smu2450.read())
        assert reading["smu2450"]["value"] == pytest.approx(100)
        assert reading["smu2450-in_compliance"]["value"] is False
        run(RE, lambda: smu2450.set(200))  # past breakdown
        assert run(RE, lambda: smu2450.in_compliance.get_value()) is True
        with pytest.raises(KeithleyValueError, match="210"):
            run(RE, lambda: smu2450.set(500))
        run(RE, lambda: smu2450.close())


def test_dialect_mismatch_is_caught_on_connect(RE: RunEngine, sim: RunningSim) -> None:
    smu = Keithley2410(f"serial://{sim.address}", dialect="2450", name="wrong")
    with pytest.raises(KeithleyError, match=r"MODEL 2410.*not a 2450"):
        run(RE, lambda: smu.connect(timeout=5))


def test_count_and_scan_take_one_reading_per_point(
    RE: RunEngine, smu: Keithley2410, sent: Commands
) -> None:
    documents: list[tuple[str, dict[str, Any]]] = []
    sent.lines.clear()
    RE(bp.count([smu], num=3), lambda name, doc: documents.append((name, doc)))
    assert [name for name, _ in documents].count("event") == 3
    assert sent.count(":READ?") == 3
    documents.clear()
    sent.lines.clear()
    RE(bp.scan([smu], smu, 0, 100, 5), lambda name, doc: documents.append((name, doc)))
    events = [doc["data"] for name, doc in documents if name == "event"]
    assert [data["smu"] for data in events] == pytest.approx([0, 25, 50, 75, 100], abs=0.05)
    currents = [data["smu-current"] for data in events]
    assert currents == sorted(currents) and currents[-1] > 0
    assert sent.count(":READ?") == 5


def test_a_trigger_long_after_a_move_takes_a_new_reading(
    RE: RunEngine, smu: Keithley2410, sent: Commands
) -> None:
    smu.fresh_for = 0.05
    run(RE, lambda: smu.set(10))
    sent.lines.clear()
    run(RE, lambda: smu.trigger())
    assert sent.count(":READ?") == 0  # the move's own reading serves
    run(RE, lambda: smu.set(20))
    run(RE, lambda: asyncio.sleep(0.1))
    run(RE, lambda: smu.trigger())
    assert sent.count(":READ?") == 2


def test_mock_mode_needs_no_instrument(RE: RunEngine) -> None:
    with init_devices(mock=True):
        dry = Keithley2410("serial:///dev/ttyUSB-not-here")
    run(RE, lambda: dry.configure_iv(compliance=1e-5))
    run(RE, lambda: dry.on())
    RE(bp.count([dry], num=2))
    RE(bp.scan([dry], dry, 0, 50, 3))
    assert run(RE, lambda: dry.voltage.get_value()) == 50
    assert run(RE, lambda: dry.compliance.get_value()) == 1e-5
