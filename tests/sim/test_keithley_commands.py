"""The Keithley simulator against its manuals' command summaries, over a raw socket: signal-oriented
measurement, the trigger model, source functions, modes and ranges, sense settings, output and
system commands (2400 Series User's Manual, sections 17-18), the 2450's reading buffer, and the
manual's error for each family's commands the other lacks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from teststand.sim.physics import SensorModel

UNDEFINED = '-113,"Undefined header"'
CONFLICT = '-221,"Settings conflict"'
OUT_OF_RANGE = '-222,"Data out of range"'
STALE = '-230,"Data corrupt or stale"'
#: STAT bits: 2 front terminals, 3 compliance, 11 V sensed, 12 I sensed, 14 V source, 15 I source.
FRONT, COMPLIANCE, V_SENSED, I_SENSED, V_SOURCE, I_SOURCE = 4, 8, 2048, 4096, 16384, 32768


def numbers(reply: str) -> list[float]:
    return [float(value) for value in reply.split(",")]


def sensor_current(volts: float) -> float:
    return SensorModel().current(volts, 20.0)


@pytest.fixture
def smu(raw_sim: Callable[..., Any]) -> Any:
    return raw_sim("keithley2410", terminator=b"\n")


@pytest.fixture
def smu2450(raw_sim: Callable[..., Any]) -> Any:
    return raw_sim("keithley2410", terminator=b"\n", dialect="2450")


# -- 2400/2410: signal-oriented measurement and the trigger model ------------------------------


def test_fetch_before_any_reading_is_stale(smu: Any) -> None:
    assert smu.ask(":FETC?", timeout=0.3) is None
    assert smu.ask(":SENS:DATA?", timeout=0.3) is None
    assert smu.errors() == [STALE, STALE]


def test_configure_measure_fetch_and_latest(smu: Any) -> None:
    smu.send(":SOUR:VOLT 20;:FORM:ELEM VOLT,CURR,STAT")
    smu.send(":CONF:CURR")  # one-shot set-up: CURR only, counts 1, output on
    assert smu.ask(":CONF?;:OUTP?;:TRIG:COUN?;:ARM:COUN?") == '"CURR:DC";1;1;1'
    volts, amps, status = numbers(smu.ask(":READ?"))
    assert (volts, amps, status) == (
        20.0,
        pytest.approx(sensor_current(20)),
        FRONT + I_SENSED + V_SOURCE,
    )
    first = smu.ask(":FETC?")
    assert smu.ask(":FETC?") == first == smu.ask(":SENS:DATA:LAT?")  # the same readings again
    volts, amps, status = numbers(smu.ask(":MEAS:VOLT?"))  # CONF:VOLT + READ?
    assert volts == 20.0 and amps == 9.91e37 and status == FRONT + V_SENSED + V_SOURCE
    assert smu.ask(":CONF?") == '"VOLT:DC"'
    smu.send(":OUTP OFF")
    assert numbers(smu.ask(":MEAS?"))[0] == 20.0  # the present function; the output turns on
    smu.send(":INIT")
    assert smu.errors() == []
    assert smu.ask(":CONF:CURR?", timeout=0.3) is None  # CONF is a command only
    assert smu.errors() == [UNDEFINED]


def test_trigger_and_arm_counts_multiply_the_readings(smu: Any) -> None:
    smu.send(":FORM:ELEM VOLT,CURR;:OUTP ON;:SOUR:VOLT 10;:TRIG:COUN 5;:ARM:COUN 2")
    assert smu.ask(":TRIG:COUN?;:ARM:COUN?") == "5;2"
    assert len(numbers(smu.ask(":READ?"))) == 2 * 5 * 2
    smu.send(":INIT")
    assert len(numbers(smu.ask(":FETC?"))) == 20
    assert len(numbers(smu.ask(":SENS:DATA?"))) == 2
    smu.send(":TRIG:COUN 2500")  # 2 × 2500 readings exceed the sample buffer
    smu.send(":TRIG:COUN 0")
    smu.send(":TRIG:DEL 1000")
    assert smu.errors() == [CONFLICT, OUT_OF_RANGE, OUT_OF_RANGE]
    smu.send(":ARM:COUN 1;:TRIG:COUN 2500;:TRIG:DEL 0.5")
    assert smu.ask(":TRIG:COUN?;:TRIG:DEL?") == "2500;5.000000E-01"
    smu.send(":OUTP OFF;:INIT")
    assert smu.errors() == ['803,"Output disabled"']


def test_voltage_sweep_and_list(smu: Any) -> None:
    smu.send(":SOUR:VOLT:STAR 0;:SOUR:VOLT:STOP -100;:SOUR:VOLT:STEP -25")
    assert smu.ask(":SOUR:SWE:POIN?;:SOUR:VOLT:SPAN?;:SOUR:VOLT:CENT?") == (
        "5;-1.000000E+02;-5.000000E+01"
    )
    smu.send(":SOUR:VOLT:MODE SWE;:TRIG:COUN 5;:FORM:ELEM VOLT;:OUTP ON")
    assert numbers(smu.ask(":READ?")) == [0.0, -25.0, -50.0, -75.0, -100.0]
    smu.send(":SOUR:SWE:DIR DOWN;:TRIG:COUN 6")
    assert numbers(smu.ask(":READ?")) == [-100.0, -75.0, -50.0, -25.0, 0.0, -100.0]
    smu.send(":SOUR:SWE:DIR UP;:SOUR:SWE:SPAC LOG;:SOUR:VOLT:STAR 1;:SOUR:VOLT:STOP 100")
    smu.send(":SOUR:SWE:POIN 3;:TRIG:COUN 3")
    assert numbers(smu.ask(":READ?")) == pytest.approx([1.0, 10.0, 100.0])
    smu.send(":SOUR:LIST:VOLT 5,-5,2.5;:SOUR:VOLT:MODE LIST;:TRIG:COUN 4")
    assert smu.ask(":SOUR:LIST:VOLT:POIN?;:SOUR:VOLT:MODE?") == "3;LIST"
    assert numbers(smu.ask(":READ?")) == [5.0, -5.0, 2.5, 5.0]
    smu.send(":SOUR:VOLT:MODE FIX;:SOUR:VOLT 7;:TRIG:COUN 2")
    assert numbers(smu.ask(":READ?")) == [7.0, 7.0]
    smu.send(":SOUR:LIST:VOLT 5,2000")
    smu.send(":SOUR:VOLT:MODE RAMP")
    assert smu.errors() == [OUT_OF_RANGE, '-224,"Illegal parameter value"']


def test_current_source_and_voltage_compliance(smu: Any) -> None:
    smu.send(':SOUR:FUNC CURR;:SOUR:CURR -1e-6;:SENS:FUNC:OFF:ALL;:SENS:FUNC "VOLT"')
    smu.send(":SENS:VOLT:PROT 100;:FORM:ELEM VOLT,CURR,STAT;:OUTP ON")
    volts, amps, status = numbers(smu.ask(":READ?"))
    assert amps == -1e-6 and -100 < volts < 0
    assert sensor_current(volts) == pytest.approx(1e-6, rel=1e-6)
    assert status == FRONT + V_SENSED + I_SOURCE
    assert smu.ask(":SOUR:CURR:RANG?;:SENS:VOLT:PROT:TRIP?") == "1.000000E-06;0"
    smu.send(":SOUR:CURR 1e-3")  # the sensor takes far less at the 100 V limit
    volts, amps, status = numbers(smu.ask(":READ?"))
    assert volts == 100.0 and amps == pytest.approx(sensor_current(100))
    assert status == FRONT + COMPLIANCE + V_SENSED + I_SOURCE
    assert smu.ask(":SENS:VOLT:PROT:TRIP?;:SENS:CURR:PROT:TRIP?") == "1;0"
    smu.send(":SOUR:CURR:RANG 1e-5")  # too small for 1 mA
    smu.send(":SOUR:CURR 2")
    assert smu.errors() == [CONFLICT, OUT_OF_RANGE]


def test_sense_ranges_nplc_and_functions(smu: Any) -> None:
    smu.send(":SENS:VOLT:RANG 20;:SENS:RES:RANG 2e4;:SENS:CURR:RANG 1e-6;:SENS:RES:NPLC 10")
    assert smu.ask(":SENS:VOLT:RANG?;:SENS:VOLT:RANG:AUTO?;:SENS:RES:RANG?") == (
        "2.000000E+01;0;2.000000E+04"
    )
    assert smu.ask(":SENS:CURR:RANG:AUTO?;:SENS:CURR:NPLC?;:SENS:VOLT:NPLC? MAX") == (
        "0;1.000000E+01;1.000000E+01"
    )
    smu.send(":SENS:CURR:NPLC 11;:SENS:FUNC 'TEMP'")
    assert smu.errors() == [OUT_OF_RANGE]  # the rest of the line is skipped
    smu.send(":SENS:FUNC 'TEMP'")
    smu.send(":SENS:RES:MODE AUTO;:SENS:FUNC:CONC OFF;:SENS:FUNC 'VOLT','CURR'")
    assert smu.errors() == ['-224,"Illegal parameter value"', CONFLICT]
    assert smu.ask(":SENS:RES:MODE?;:SENS:FUNC:CONC?") == "AUTO;0"


def test_output_off_mode_auto_output_off_and_system(raw_sim: Callable[..., Any]) -> None:
    smu_2400 = raw_sim("keithley2410", terminator=b"\n", dialect="2400")
    smu_2410 = raw_sim("keithley2410", terminator=b"\n")
    assert (smu_2400.ask(":OUTP:SMOD?"), smu_2410.ask(":OUTP:SMOD?")) == ("NORM", "GUAR")
    smu = smu_2410
    smu.send(":SOUR:CLE:AUTO ON;:FORM:ELEM VOLT;:SOUR:VOLT 3")
    assert smu.ask(":READ?;:OUTP?") == "+3.000000E+00;0"  # on for the reading only
    smu.send(":SOUR:CLE:AUTO OFF;:OUTP ON;:SOUR:CLE")
    assert smu.ask(":OUTP?;:SOUR:CLE:AUTO?") == "0;0"
    smu.send(":SYST:RSEN ON;:SYST:AZER OFF;:SYST:TIME:RES")
    assert smu.ask(":SYST:RSEN?;:SYST:AZER?") == "1;0"
    assert 0 <= float(smu.ask(":SYST:TIME?")) < 5
    smu.send(":SOUR:DEL 0.05;:SENS:AVER:TCON MOV;:SENS:AVER:COUN 20;:SENS:AVER ON;:DISP:ENAB OFF")
    assert smu.ask(":SOUR:DEL?;:SOUR:DEL:AUTO?;:SENS:AVER?;:SENS:AVER:TCON?;:SENS:AVER:COUN?") == (
        "5.000000E-02;0;1;MOV;20"
    )
    smu.send(":SENS:AVER:COUN 101")
    assert smu.errors() == [OUT_OF_RANGE]
    smu.send(":SYST:PRES")
    assert smu.ask(":SYST:RSEN?;:FORM:ELEM?;:SOUR:DEL:AUTO?;:DISP:ENAB?;*OPC?") == (
        "0;VOLT,CURR,RES,TIME,STAT;1;1;1"
    )
    assert smu.errors() == []


def test_local_control_refuses_one_shot_set_ups(raw_sim: Callable[..., Any]) -> None:
    smu = raw_sim("keithley2410", terminator=b"\n", faults="local")
    smu.send(":CONF:CURR")
    assert smu.ask(":MEAS:CURR?", timeout=0.3) is None
    assert smu.errors() == [CONFLICT, CONFLICT]


@pytest.mark.parametrize(
    "command",
    [":SOUR:VOLT:ILIM 1e-5", ":COUN 5", ":TRAC:ACT?", ":TRAC:CLE", ":SOUR:CURR:VLIM 10"],
)
def test_2400_lacks_the_2450_commands(smu: Any, command: str) -> None:
    smu.send(command)
    assert smu.errors() == [UNDEFINED]


# -- 2450 --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ":CONF:CURR",
        ":CONF?",
        ":TRIG:COUN 5",
        ":ARM:COUN 2",
        ":FORM:ELEM VOLT",
        ":SOUR:VOLT:MODE SWE",
        ":SENS:VOLT:PROT 10",
        ":SENS:DATA?",
        ":SYST:TIME:RES",
    ],
)
def test_2450_lacks_the_2400_commands(smu2450: Any, command: str) -> None:
    smu2450.send(command)
    assert smu2450.errors() == [UNDEFINED]


def test_2450_reading_buffer(smu2450: Any) -> None:
    smu = smu2450
    assert smu.ask(":FETC?", timeout=0.3) is None
    assert smu.errors() == [STALE]
    smu.send(":COUN 3;:OUTP ON;:SOUR:VOLT 10")
    amps = f"{sensor_current(10):.6E}"
    assert smu.ask(":COUN?;:READ?") == f"3;{amps}"
    assert smu.ask(":TRAC:ACT?") == "3"
    pair = f"1.000000E+01,{amps}"
    assert smu.ask(':TRAC:DATA? 2,3,"defbuffer1",SOUR,READ') == f"{pair},{pair}"
    assert smu.ask(":MEAS:VOLT?;:FETC?;:TRAC:ACT?") == "1.000000E+01;1.000000E+01;6"
    assert smu.ask(":SENS:FUNC?") == '"VOLT:DC"'
    smu.send(':INIT;:TRAC:TRIG "defbuffer1"')
    assert smu.ask(":TRAC:ACT? 'defbuffer1'") == "10"
    smu.send(":TRAC:CLE")
    assert smu.ask(":TRAC:ACT?") == "0"
    smu.send(":TRAC:DATA? 1,5")
    smu.send(':READ? "mybuffer"')
    smu.send(":COUN 0")
    assert smu.errors() == [OUT_OF_RANGE, '-224,"Illegal parameter value"', OUT_OF_RANGE]


def test_2450_per_function_settings(smu2450: Any) -> None:
    smu = smu2450
    smu.send(":SENS:CURR:AVER ON;:SENS:CURR:AVER:COUN 50;:SENS:VOLT:AVER:TCON MOV")
    smu.send(":SENS:CURR:RSEN ON;:SENS:CURR:AZER OFF;:SOUR:VOLT:DEL 0.2;:SOUR:VOLT:READ:BACK OFF")
    assert smu.ask(":SENS:CURR:AVER?;:SENS:CURR:AVER:COUN?;:SENS:CURR:AVER:TCON?") == "1;50;MOV"
    assert smu.ask(":SENS:CURR:RSEN?;:SENS:CURR:AZER?;:SOUR:VOLT:DEL?") == "1;0;2.000000E-01"
    assert smu.ask(":SOUR:VOLT:DEL:AUTO?;:SOUR:VOLT:READ:BACK?") == "0;0"
    smu.send(":SENS:CURR:AVER:COUN 0")
    smu.send(":SENS:AVER ON")  # the 2400's global form
    smu.send(":SOUR:DEL 0.1")
    assert smu.errors() == [OUT_OF_RANGE, UNDEFINED, UNDEFINED]


def test_2450_current_source_and_voltage_limit(smu2450: Any) -> None:
    smu = smu2450
    smu.send(":SOUR:FUNC CURR;:SOUR:CURR:VLIM 5;:SOUR:CURR 1e-3;:OUTP ON")
    assert smu.ask(":MEAS:VOLT?;:SOUR:CURR:VLIM:TRIP?;:SOUR:VOLT:ILIM:TRIP?") == (
        "5.000000E+00;1;0"
    )
    assert smu.ask(':READ? "defbuffer1",SOUR') == f"{sensor_current(5):.6E}"
    smu.send(":SOUR:CURR 1e-9")  # 10 nA range on the 2450 only
    assert smu.ask(":SOUR:CURR:RANG?;:SOUR:CURR:VLIM:TRIP?") == "1.000000E-08;0"
