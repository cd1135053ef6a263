"""The R&S HMP4040 simulator over TCP: channel selection, switches, CC mode, OVP, errors, and the
manual's step, fuse, arbitrary-waveform and setup-memory commands."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from teststand.sim.hmp4040_channel import Waveform

OUT_OF_RANGE = '-222,"Data out of range"'
CONFLICT = '-221,"Settings conflict"'


@pytest.fixture
def hmp(raw_sim: Callable[..., Any]) -> Any:
    return raw_sim("hmp4040", terminator=b"\n", loads=[2.0, 4.0, 8.0, 16.0])


def test_identity_and_channel_count(raw_sim: Callable[..., Any]) -> None:
    hmp4040 = raw_sim("hmp4040", terminator=b"\n", serial="100042")
    assert hmp4040.ask("*IDN?") == "ROHDE&SCHWARZ,HMP4040,100042,HW50020001/SW2.51"
    hmp2030 = raw_sim("hmp4040", terminator=b"\n", channels=3)
    assert hmp2030.ask("*IDN?").startswith("ROHDE&SCHWARZ,HMP2030,")
    hmp2030.send("INST:NSEL 4")
    hmp2030.send("INST OUT4")
    assert hmp2030.errors() == ['-222,"Data out of range"', '-224,"Illegal parameter value"']
    assert hmp2030.ask("INST:NSEL 3;:INST:NSEL?;:INST?") == "3;OUTP3"


def test_settings_are_per_channel_and_formatted(hmp: Any) -> None:
    hmp.send("INST:NSEL 1")
    hmp.send("VOLT 12")
    hmp.send("CURR 1.2345")
    hmp.send("INST OUT2")
    hmp.send("APPL 3.3,0.5")
    assert hmp.ask("VOLT?;:CURR?;:APPL?") == "3.300;0.5000;3.300,0.5000"
    hmp.send("INSTRUMENT:SELECT OUTPUT1")
    assert hmp.ask("VOLT?;:CURR?;:INST:NSEL?") == "12.000;1.2345;1"
    assert hmp.ask("VOLT? MAX;:CURR? MAX;:VOLT:PROT? MAX") == "32.000;10.0000;33.000"
    assert hmp.errors() == []


def test_channel_delivers_only_when_armed_and_master_on(hmp: Any) -> None:
    hmp.send("INST:NSEL 3;:APPL 4,1")
    hmp.send("OUTP:SEL 1")
    assert hmp.ask("OUTP:SEL?;:OUTP:GEN?;:MEAS:VOLT?;:MEAS:CURR?") == "1;0;0.000;0.0000"
    hmp.send("OUTP:GEN 1")
    assert hmp.ask("MEAS:VOLT?;:MEAS:CURR?;:OUTP?") == "4.000;0.5000;1"  # 4 V on 8 Ω
    hmp.send("INST:NSEL 4")  # armed channel 3 keeps delivering; channel 4 is not armed
    assert hmp.ask("MEAS:VOLT?;:OUTP?") == "0.000;0"
    hmp.send("INST:NSEL 3;:OUTP:GEN 0")
    assert hmp.ask("MEAS:CURR?;:OUTP:SEL?") == "0.0000;1"


def test_constant_current_mode(hmp: Any) -> None:
    hmp.send("INST:NSEL 1;:APPL 12,1;:OUTP:SEL 1;:OUTP:GEN 1")
    assert hmp.ask("MEAS:VOLT?;:MEAS:CURR?") == "2.000;1.0000"  # 12 V on 2 Ω limited to 1 A
    hmp.send("CURR 10")
    assert hmp.ask("MEAS:VOLT?;:MEAS:CURR?") == "12.000;6.0000"


def test_outp_on_arms_the_channel_and_the_master(hmp: Any) -> None:
    hmp.send("INST OUT2;:VOLT 2;:CURR 1")
    hmp.send("OUTP ON")
    assert hmp.ask("OUTP:SEL?;:OUTP:GEN?;:OUTP?;:MEAS:CURR?") == "1;1;1;0.5000"
    hmp.send("OUTP OFF")
    assert hmp.ask("OUTP:SEL?;:OUTP:GEN?;:OUTP?;:MEAS:CURR?") == "0;1;0;0.0000"


def test_over_voltage_protection_trips_the_channel(hmp: Any) -> None:
    hmp.send("INST:NSEL 2;:VOLT:PROT 5;:APPL 4,2;:OUTP ON")
    assert hmp.ask("MEAS:VOLT?;:VOLT:PROT:TRIP?") == "4.000;0"
    hmp.send("VOLT 6")
    assert hmp.ask("MEAS:VOLT?;:OUTP:SEL?;:VOLT:PROT:TRIP?") == "0.000;0;1"
    hmp.send("VOLT:PROT:CLE;:VOLT 3;:OUTP:SEL 1")
    assert hmp.ask("VOLT:PROT:TRIP?;:MEAS:VOLT?") == "0;3.000"


def test_out_of_range_and_bad_commands(hmp: Any) -> None:
    hmp.send("VOLT 32.5")
    hmp.send("CURR -1")
    hmp.send("APPL 5")
    hmp.send("OUTP:GEN 2,3")
    assert hmp.ask("MEAS:POW?", timeout=0.3) is None
    assert hmp.errors() == [
        '-222,"Data out of range"',
        '-222,"Data out of range"',
        '-109,"Missing parameter"',
        '-108,"Parameter not allowed"',
        '-113,"Undefined header"',
    ]
    assert hmp.ask("VOLT?;:CURR?") == "0.000;0.1000"


def test_reset_status_preset_and_clear(hmp: Any) -> None:
    hmp.send("INST:NSEL 4;:APPL 5,1;:OUTP ON")
    hmp.send("BOGUS")
    hmp.send("*RST;STATUS:PRESET;*CLS")
    assert hmp.ask("SYST:ERR?") == '0,"No error"'
    assert hmp.ask("INST:NSEL?;:APPL?;:OUTP:GEN?;:OUTP:SEL?") == "1;0.000,0.1000;0;0"
    assert hmp.ask("INST:NSEL 4;:APPL?") == "0.000,0.1000"


def test_local_control_refuses_settings(raw_sim: Callable[..., Any]) -> None:
    hmp = raw_sim("hmp4040", terminator=b"\n", faults="local")
    hmp.send("VOLT 5")
    hmp.send("OUTP:GEN 1")
    assert hmp.ask("VOLT?;:OUTP:GEN?") == "0.000;0"
    assert hmp.errors() == ['-221,"Settings conflict"'] * 2


def test_voltage_and_current_steps(hmp: Any) -> None:
    hmp.send("INST:NSEL 1;:VOLT 5;:VOLT:STEP 0.5;:VOLT UP;:VOLT UP")
    assert hmp.ask("VOLT?;:VOLT:STEP?;:VOLT:STEP? DEF") == "6.000;0.500;1.000"
    hmp.send("SOUR:VOLT:LEV:STEP:INCR 0.25;:VOLT DOWN;:CURR:STEP 0.25;:CURR UP")
    assert hmp.ask("VOLT?;:CURR?;:CURR:STEP?") == "5.750;0.3500;0.2500"
    assert hmp.ask("INST:NSEL 2;:VOLT:STEP?;:CURR:STEP?") == "1.000;0.1000"  # per channel
    hmp.send("VOLT 31.5;:VOLT UP")  # past 32 V
    hmp.send("CURR 0;:CURR DOWN")
    hmp.send("VOLT:STEP 40")
    hmp.send("VOLT SIDEWAYS")
    assert hmp.errors() == [OUT_OF_RANGE, OUT_OF_RANGE, OUT_OF_RANGE, '-104,"Data type error"']
    assert hmp.ask("VOLT?;:CURR?") == "31.500;0.0000"


def test_over_voltage_protection_modes(hmp: Any) -> None:
    hmp.send("INST:NSEL 1;:APPL 6,1;:VOLT:PROT 5;:OUTP ON")  # 6 V on 2 Ω: 2 V at 1 A
    assert hmp.ask("MEAS:VOLT?;:VOLT:PROT:TRIP?;:VOLT:PROT:MODE?") == "2.000;0;MEAS"
    hmp.send("VOLT:PROT:MODE PROT")  # the set voltage counts now
    assert hmp.ask("VOLT:PROT:TRIP?;:OUTP:SEL?;:VOLT:PROT:MODE?") == "1;0;PROT"


def test_fuse_blows_after_its_delay_and_takes_linked_channels(hmp: Any) -> None:
    hmp.send("INST:NSEL 2;:APPL 1,1;:OUTP ON;:INST:NSEL 3;:APPL 1,1;:OUTP ON")
    hmp.send("INST:NSEL 1;:FUSE ON;:FUSE:DEL 250;:FUSE:LINK 2;:APPL 12,1")
    assert hmp.ask("FUSE?;:FUSE:DEL?;:FUSE:LINK? 2;:FUSE:LINK? 3") == "1;250;1;0"
    assert hmp.ask("OUTP ON;:FUSE:TRIP?;:MEAS:CURR?") == "0;1.0000"  # limited, within the delay
    time.sleep(0.4)
    assert hmp.ask("FUSE:TRIP?;:OUTP:SEL?;:MEAS:CURR?") == "1;0;0.0000"
    assert hmp.ask("INST:NSEL 2;:OUTP:SEL?;:INST:NSEL 3;:OUTP:SEL?") == "0;1"  # 2 follows 1
    hmp.send("INST:NSEL 1;:FUSE:UNL 2;:FUSE:DEL 0;:CURR 10;:OUTP:SEL 1")
    assert hmp.ask("FUSE:TRIP?;:FUSE:LINK? 2;:MEAS:CURR?") == "0;0;6.0000"  # armed again
    hmp.send("CURR 2")  # limited again with no delay: blows at once
    assert hmp.ask("FUSE:TRIP?;:OUTP:SEL?") == "1;0"
    hmp.send("FUSE:DEL 300")
    hmp.send("FUSE:LINK 5")
    assert hmp.errors() == [OUT_OF_RANGE, OUT_OF_RANGE]


def test_arbitrary_waveform_plays_in_simulated_time(raw_sim: Callable[..., Any]) -> None:
    hmp = raw_sim("hmp4040", terminator=b"\n", speed=10)  # a 10 s dwell lasts 1 s
    hmp.send("ARB:DATA 1,1,10,2,1,10;:ARB:REP 3;:ARB:TRAN 1;:INST:NSEL 1;:APPL 5,3;:OUTP ON")
    assert hmp.ask("ARB:STAR 1;:MEAS:VOLT?;:VOLT?;:ARB:REP?") == "1.000;5.000;3"
    time.sleep(1.5)
    assert hmp.ask("MEAS:VOLT?") == "2.000"
    assert hmp.ask("ARB:STOP 1;:MEAS:VOLT?") == "5.000"  # back to its own setting
    hmp.send("ARB:SAVE 2;:ARB:DATA 3,1,1;:ARB:REST 2;:ARB:TRAN 3;:ARB:CLE 1")
    assert hmp.ask("INST:NSEL 3;:OUTP ON;:ARB:STAR 3;:MEAS:VOLT?;:ARB:REP?") == "1.000;3"
    hmp.send("ARB:STAR 1")  # cleared
    hmp.send("ARB:DATA 1,1")
    hmp.send("ARB:DATA 40,1,1")
    hmp.send("ARB:DATA 1,1,0.01")
    hmp.send("ARB:TRAN 5")
    hmp.send("ARB:REST 4")
    assert hmp.errors() == [
        CONFLICT,
        '-109,"Missing parameter"',
        OUT_OF_RANGE,
        OUT_OF_RANGE,
        OUT_OF_RANGE,
        OUT_OF_RANGE,
    ]


def test_waveform_repeats_then_ends() -> None:
    waveform = Waveform(((1.0, 0.5, 2.0), (2.0, 0.5, 3.0)), repetitions=2)
    assert [waveform.at(t) for t in (0.0, 1.9, 2.0, 5.5, 9.9)] == [
        (1.0, 0.5),
        (1.0, 0.5),
        (2.0, 0.5),
        (1.0, 0.5),
        (2.0, 0.5),
    ]
    assert waveform.at(10.0) is None
    assert Waveform(waveform.points).at(1e6 + 1.0) == (1.0, 0.5)  # 0 repetitions: forever


def test_setup_memories_beeper_and_mixed_control(hmp: Any) -> None:
    hmp.send("INST:NSEL 2;:VOLT 5;*SAV 1;:VOLT 7")
    assert hmp.ask("*RCL 1;:VOLT?") == "5.000"
    hmp.send("*RCL 9")
    hmp.send("SYST:BEEP;:SYST:MIX;:SYST:REM")
    assert hmp.errors() == [CONFLICT]
