"""The Keithley 2400/2410/2450 simulator over TCP: IV set-up, readings, compliance, dialects."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from teststand.sim.physics import SensorModel

IV_SETUP = (
    "*RST",
    ":SOUR:FUNC VOLT",
    ":SOUR:VOLT:RANG 1000",
    ':SENS:FUNC "CURR"',
    ":SENS:CURR:PROT 1e-4",
    ":SENS:CURR:NPLC 1",
    ":ROUT:TERM FRON",
    ":FORM:ELEM VOLT,CURR,RES,TIME,STAT",
    ":OUTP ON",
)
NAN_TEXT = "+9.910000E+37"
#: STAT word: front terminals (bit 2), current measured (bit 12), voltage source (bit 14).
STAT_FRONT = 4 + 4096 + 16384
COMPLIANCE_BIT = 8


def sci(value: float) -> str:
    return f"{value + 0.0:+.6E}"


def expected_current(volts: float, **sensor: float) -> float:
    model = SensorModel(
        leakage_20c=sensor.get("leakage", 1e-6),
        depletion_voltage=sensor.get("depletion", 50.0),
        breakdown_voltage=sensor.get("breakdown", 400.0),
    )
    return model.current(volts, 20.0)


@pytest.fixture
def smu(raw_sim: Callable[..., Any]) -> Any:
    return raw_sim("keithley2410", terminator=b"\n")


@pytest.mark.parametrize(
    ("dialect", "identity"),
    [
        ("2410", "KEITHLEY INSTRUMENTS INC.,MODEL 2410,"),
        ("2400", "KEITHLEY INSTRUMENTS INC.,MODEL 2400,"),
        ("2450", "KEITHLEY INSTRUMENTS,MODEL 2450,"),
    ],
)
def test_identity(raw_sim: Callable[..., Any], dialect: str, identity: str) -> None:
    smu = raw_sim("keithley2410", terminator=b"\n", dialect=dialect, serial="1234567")
    reply = smu.ask("*IDN?")
    assert reply.startswith(identity + "1234567,")
    assert len(reply.split(",")) == 4


def test_full_iv_setup_and_readings(smu: Any) -> None:
    for command in IV_SETUP:
        smu.send(command)
    assert smu.errors() == []
    assert smu.ask(":OUTP?;:SENS:CURR:PROT?;:SOUR:VOLT:RANG?") == "1;1.000000E-04;1.000000E+03"
    for volts in (0, -20, -100):
        smu.send(f":SOUR:VOLT {volts}")
        voltage, current, resistance, time, status = smu.ask(":READ?").split(",")
        assert voltage == sci(volts + 0.0)
        assert current == sci(-expected_current(volts))
        assert resistance == NAN_TEXT
        assert float(time) >= 0
        assert status == sci(STAT_FRONT)
    assert smu.ask(":SENS:CURR:PROT:TRIP?") == "0"


def test_read_with_output_off_is_silent_and_queues_803(smu: Any) -> None:
    assert smu.ask(":READ?", timeout=0.3) is None
    assert smu.errors() == ['803,"Output disabled"']


def test_iv_current_grows_and_breakdown_drives_compliance(raw_sim: Callable[..., Any]) -> None:
    smu = raw_sim("keithley2410", terminator=b"\n", breakdown=200.0)
    for command in (*IV_SETUP[:4], ":SENS:CURR:PROT 1e-5", ":FORM:ELEM VOLT,CURR,STAT", ":OUTP ON"):
        smu.send(command)
    currents: list[float] = []
    tripped: list[str] = []
    for volts in range(0, -260, -25):
        smu.send(f":SOUR:VOLT {volts}")
        voltage, current, status = (float(v) for v in smu.ask(":READ?").split(","))
        currents.append(abs(current))
        tripped.append(smu.ask(":SENS:CURR:PROT:TRIP?"))
        in_compliance = int(status) & COMPLIANCE_BIT
        assert bool(in_compliance) == (tripped[-1] == "1")
        if in_compliance:
            assert current == -1e-5
            assert volts < voltage < 0  # the SMU backs off the voltage
        else:
            assert voltage == volts
    assert currents == sorted(currents)
    assert tripped[:6] == ["0"] * 6  # 0 … -125 V well below breakdown
    assert tripped[-1] == "1"


def test_compliance_reading_exact(raw_sim: Callable[..., Any]) -> None:
    smu = raw_sim("keithley2410", terminator=b"\n", breakdown=100.0)
    for command in (":SENS:CURR:PROT 2e-6", ":FORM:ELEM CURR,STAT", ":OUTP ON", ":SOUR:VOLT 150"):
        smu.send(command)
    assert smu.ask(":READ?") == f"+2.000000E-06,{sci(STAT_FRONT + COMPLIANCE_BIT)}"
    assert smu.ask(":SENS:CURR:PROT:TRIP?") == "1"


def test_form_elem_subset_comes_back_in_canonical_order(smu: Any) -> None:
    smu.send(":FORM:ELEM STAT,CURR,VOLT")
    assert smu.ask(":FORM:ELEM?") == "VOLT,CURR,STAT"
    smu.send(":OUTP ON")
    smu.send(":SOUR:VOLT 50")
    assert smu.ask(":READ?") == f"+5.000000E+01,{sci(expected_current(50))},{sci(STAT_FRONT)}"
    smu.send(":FORM:ELEMENTS TIME")
    first = float(smu.ask(":READ?"))
    assert 0 <= first <= float(smu.ask(":READ?"))


def test_missing_elements_and_resistance(smu: Any) -> None:
    smu.send(":FORM:ELEM VOLT,CURR,RES,STAT;:ROUT:TERM REAR;:OUTP ON;:SOUR:VOLT 10")
    smu.send(":SENS:FUNC:OFF:ALL")
    assert smu.ask(":READ?") == f"+1.000000E+01,{NAN_TEXT},{NAN_TEXT},{sci(16384)}"
    smu.send(":SENS:FUNC 'CURR:DC','RES'")
    amps = expected_current(10)
    assert smu.ask(":SENS:FUNC?") == '"CURR:DC","RES"'
    assert smu.ask(":READ?") == (
        f"+1.000000E+01,{sci(amps)},{sci(10 / amps)},{sci(16384 + 4096 + 8192)}"
    )


def test_source_ranges_per_dialect(raw_sim: Callable[..., Any]) -> None:
    smu_2400 = raw_sim("keithley2410", terminator=b"\n", dialect="2400")
    smu_2400.send(":SOUR:VOLT 500")
    smu_2400.send(":SOUR:VOLT:RANG 1000")
    assert smu_2400.errors() == ['-222,"Data out of range"'] * 2
    assert smu_2400.ask(":SOUR:VOLT? MAX") == "2.100000E+02"
    smu_2410 = raw_sim("keithley2410", terminator=b"\n")
    smu_2410.send(":SOUR:VOLT -1100")
    assert smu_2410.ask(":SOUR:VOLT?;:SOUR:VOLT:RANG?") == "-1.100000E+03;1.000000E+03"
    smu_2410.send(":SOUR:VOLT 0;:SOUR:VOLT:RANG 20")
    assert smu_2410.ask(":SOUR:VOLT:RANG?;:SOUR:VOLT:RANG:AUTO?") == "2.000000E+01;0"
    smu_2410.send(":SOUR:VOLT 100")  # beyond the fixed 20 V range
    assert smu_2410.errors() == ['-222,"Data out of range"']
    smu_2410.send(":SOUR:VOLT:RANG:AUTO ON;:SOUR:VOLT 100")
    assert smu_2410.ask(":SOUR:VOLT:RANG?") == "1.000000E+03"


def test_over_voltage_protection_clamps_the_output(smu: Any) -> None:
    smu.send(":SOUR:VOLT:PROT 20;:FORM:ELEM VOLT,STAT;:OUTP ON;:SOUR:VOLT -50")
    assert smu.ask(":SOUR:VOLT:PROT?") == "2.000000E+01"
    assert smu.ask(":READ?") == f"-2.000000E+01,{sci(STAT_FRONT + 16)}"


def test_temperature_option_lowers_the_leakage(raw_sim: Callable[..., Any]) -> None:
    warm = raw_sim("keithley2410", terminator=b"\n")
    cold = raw_sim("keithley2410", terminator=b"\n", temperature=lambda: -20.0)
    for smu in (warm, cold):
        smu.send(":FORM:ELEM CURR;:OUTP ON;:SOUR:VOLT -100")
    assert 0 > float(cold.ask(":READ?")) > float(warm.ask(":READ?")) / 10


def test_reset_restores_defaults(smu: Any) -> None:
    smu.send(":SENS:CURR:PROT 1e-3;:FORM:ELEM CURR;:ROUT:TERM REAR;:OUTP ON;:SOUR:VOLT 5")
    smu.send("*RST")
    assert smu.ask(":OUTP?;:SOUR:VOLT?;:SENS:CURR:PROT?;:SENS:CURR:NPLC?") == (
        "0;0.000000E+00;1.050000E-04;1.000000E+00"
    )
    assert smu.ask(":FORM:ELEM?;:ROUT:TERM?;:SOUR:FUNC?") == "VOLT,CURR,RES,TIME,STAT;FRON;VOLT"
    smu.send(":SOUR:FUNC CURR;:SOUR:FUNC OHMS")  # the 2400 sources voltage or current
    assert smu.ask(":SOUR:FUNC?") == "CURR"
    assert smu.errors() == ['-224,"Illegal parameter value"']


def test_local_control_and_syst_loc(raw_sim: Callable[..., Any]) -> None:
    smu = raw_sim("keithley2410", terminator=b"\n", faults="local")
    smu.send(":SENS:CURR:PROT 1e-3")
    smu.send(":SYST:LOC")
    assert smu.ask(":SENS:CURR:PROT?") == "1.050000E-04"
    assert smu.errors() == ['-221,"Settings conflict"']


def test_2450_dialect(raw_sim: Callable[..., Any]) -> None:
    smu = raw_sim("keithley2410", terminator=b"\n", dialect="2450")
    smu.send(":SENS:CURR:PROT 1e-5")  # 2400-style compliance
    smu.send(":FORM:ELEM VOLT,CURR")
    smu.send(":SOUR:VOLT:PROT 20")  # takes PROT<n> on the 2450
    assert smu.errors() == [
        '-113,"Undefined header"',
        '-113,"Undefined header"',
        '-104,"Data type error"',
    ]
    for command in (
        "*RST",
        ":SOUR:FUNC VOLT",
        ':SENS:FUNC "CURR"',
        ":SOUR:VOLT:ILIM 1e-5",
        ":SOUR:VOLT:RANG 200",
        ":SENS:CURR:NPLC 1",
        ":ROUT:TERM FRON",
    ):
        smu.send(command)
    assert smu.errors() == []
    assert smu.ask(":READ?") == "0.000000E+00"  # output off: the normal output-off state, 0 V
    smu.send(":OUTP ON;:SOUR:VOLT -100")
    amps = expected_current(-100)
    assert smu.ask(':READ? "defbuffer1",SOUR,READ') == f"-1.000000E+02,{-amps:.6E}"
    assert smu.ask(":SOUR:VOLT:ILIM?;:SOUR:VOLT:ILIM:TRIP?") == "1.000000E-05;0"
    smu.send(":SOUR:VOLT:PROT PROT20")
    assert smu.ask(":SOUR:VOLT:PROT?;:READ? 'defbuffer1',SOUR") == "PROT20;-2.000000E+01"
    smu.send(":SOUR:VOLT:PROT NONE;:SOUR:VOLT:ILIM 1e-7")
    assert smu.ask(":READ?;:SOUR:VOLT:ILIM:TRIP?") == "-1.000000E-07;1"
    smu.send(":SOUR:VOLT 250")
    assert smu.errors() == ['-222,"Data out of range"']
