"""The SCPI engine: patterns, parameters, `;`-joined lines, the error queue, LOCAL refusal."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from teststand.sim.scpi import (
    UNDEFINED_HEADER,
    Call,
    Command,
    Limits,
    ScpiError,
    ScpiInstrument,
    compile_pattern,
    reader,
    short_form,
    to_bool,
    to_choice,
    to_number,
    to_string,
)

SOURCE_LEVEL = "[:SOURce[1]]:VOLTage[:LEVel][:IMMediate][:AMPLitude]"


@pytest.fixture
def smu(raw_sim: Callable[..., Any]) -> Any:
    return raw_sim("keithley2410", terminator=b"\n")


# -- patterns and parameters (no link needed) ---------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        ":VOLT",
        ":SOUR:VOLT",
        ":SOURCE:VOLTAGE",
        ":SOUR1:VOLT:LEV",
        ":SOUR:VOLT:LEVEL:IMM:AMPL",
        ":VOLTAGE:IMMEDIATE:AMPLITUDE",
    ],
)
def test_pattern_accepts_short_long_and_optional_nodes(header: str) -> None:
    assert compile_pattern(SOURCE_LEVEL).fullmatch(header)


@pytest.mark.parametrize(
    "header", [":SOURC:VOLT", ":SOUR2:VOLT", ":VOLTA", ":SOUR", ":VOLT:LEV:LEV"]
)
def test_pattern_rejects_partial_forms_and_wrong_suffixes(header: str) -> None:
    assert compile_pattern(SOURCE_LEVEL).fullmatch(header) is None


def test_pattern_without_leading_colon_and_common_commands() -> None:
    assert compile_pattern("INSTrument:NSELect").fullmatch(":INST:NSEL")
    assert compile_pattern("*IDN").fullmatch("*IDN")
    assert short_form("NSELect") == "NSEL"
    assert short_form("OUTPut1") == "OUTP1"


def test_numbers() -> None:
    limits = Limits(-10.0, 10.0, 1.0)
    assert to_number("1e-6") == 1e-6
    assert to_number("-.5", limits) == -0.5
    assert to_number("+2.", limits) == 2.0
    assert [to_number(w, limits) for w in ("MIN", "maximum", "Def")] == [-10.0, 10.0, 1.0]
    for text, code in (("11", -222), ("abc", -104), ('"5"', -104), ("1.2.3", -104)):
        with pytest.raises(ScpiError) as caught:
            to_number(text, limits)
        assert caught.value.kind.code == code


def test_booleans_choices_and_strings() -> None:
    assert [to_bool(t) for t in ("ON", "off", "1", "0", "0.7")] == [True, False, True, False, True]
    assert to_choice("rear", ("FRONt", "REAR")) == "REAR"
    assert to_choice("FRONT", ("FRONt", "REAR")) == "FRONt"
    assert to_string("'CURR:DC'") == "CURR:DC"
    assert to_string('"say ""hi"""') == 'say "hi"'
    for parse, text, code in (
        (to_bool, "MAYBE", -224),
        (to_bool, '"ON"', -104),
        (lambda t: to_choice(t, ("FRONt",)), "SIDE", -224),
        (to_string, "CURR", -104),
    ):
        with pytest.raises(ScpiError) as caught:
            parse(text)
        assert caught.value.kind.code == code


class Counter(ScpiInstrument):
    """A minimal instrument: numeric suffixes reach the handler."""

    kind = "counter"

    def __init__(self) -> None:
        super().__init__()
        self.counts = {1: 0, 2: 0}

    def identity(self) -> str:
        return "ACME,COUNTER,0,1"

    def reset(self) -> None:
        self.counts = {1: 0, 2: 0}

    def counter(self, call: Call) -> int:
        if call.suffixes[0] not in self.counts:
            raise ScpiError(UNDEFINED_HEADER)
        return call.suffixes[0]

    def commands(self) -> list[Command]:
        def count(call: Call) -> str:
            call.count(0, 0)
            return str(self.counts[self.counter(call)])

        def add(call: Call) -> None:
            self.counts[self.counter(call)] += int(to_number(call.arg(), Limits(0, 9, 1)))

        return [
            Command(":COUNt#", add, count),
            Command(":TOTal", read=reader(lambda: str(sum(self.counts.values())))),
        ]


def test_numeric_suffix_reaches_the_handler() -> None:
    counter = Counter()
    assert counter.handle(":COUN2 3;:COUNT 4;:COUN1 1;:COUN2?;:COUN?;:TOT?") == "3;5;8"
    assert counter.handle(":COUN3 1") is None
    assert counter.handle("SYST:ERR?") == '-113,"Undefined header"'


# -- over the wire ------------------------------------------------------------------------------


def test_short_long_forms_case_and_leading_colon(smu: Any) -> None:
    smu.send(":sour:volt 5")
    assert smu.ask(":SOURCE:VOLTAGE:LEVEL:IMMEDIATE:AMPLITUDE?") == "5.000000E+00"
    smu.send("Source1:Voltage 7")
    assert smu.ask("sour:volt?") == "7.000000E+00"
    assert smu.ask("VOLT?") == "7.000000E+00"
    assert smu.errors() == []


def test_several_commands_on_one_line(smu: Any) -> None:
    assert smu.ask(":SOUR:VOLT 3;:SOUR:VOLT?;*OPC?") == "3.000000E+00;1"
    identity = smu.ask("*IDN?")
    assert smu.ask("*IDN?;:SYST:ERR?") == f'{identity};0,"No error"'


def test_relative_headers_after_semicolon(smu: Any) -> None:
    smu.send(":SENS:CURR:PROT 1e-5;NPLC 2")
    assert smu.ask(":SENS:CURR:PROT?;NPLC?") == "1.000000E-05;2.000000E+00"
    # common commands do not change the path
    assert smu.ask(":SENS:CURR:NPLC?;*OPC?;PROT?") == "2.000000E+00;1;1.000000E-05"
    # a relative header is resolved against the previous path only: RANG is not under :SOUR
    assert smu.ask(":SOUR:VOLT 1;RANG?", timeout=0.3) is None
    assert smu.errors() == ['-113,"Undefined header"']


def test_bad_command_is_silent_and_queued(smu: Any) -> None:
    assert smu.ask(":SOUR:VOLTS?", timeout=0.3) is None
    assert smu.ask(":SYST:ERR?") == '-113,"Undefined header"'
    assert smu.ask(":SYST:ERR?") == '0,"No error"'


def test_error_queue_order(smu: Any) -> None:
    for command in (
        "BOGUS",  # -113
        ":SOUR:VOLT abc",  # -104
        ":SOUR:VOLT 5000",  # -222
        ":OUTP MAYBE",  # -224
        ":OUTP",  # -109
        ":OUTP 1,0",  # -108
        ':SENS:FUNC "CURR',  # -102
        ":SOUR::VOLT 1",  # -102
    ):
        smu.send(command)
    assert smu.errors() == [
        '-113,"Undefined header"',
        '-104,"Data type error"',
        '-222,"Data out of range"',
        '-224,"Illegal parameter value"',
        '-109,"Missing parameter"',
        '-108,"Parameter not allowed"',
        '-102,"Syntax error"',
        '-102,"Syntax error"',
    ]
    assert smu.ask(":OUTP?") == "0"


def test_rest_of_line_skipped_after_an_error(smu: Any) -> None:
    identity = smu.ask("*IDN?")
    assert smu.ask("*IDN?;:BOGUS;:SOUR:VOLT 9") == identity
    assert smu.ask(":SOUR:VOLT?") == "0.000000E+00"
    assert smu.errors() == ['-113,"Undefined header"']


def test_queue_overflow_replaces_the_newest(smu: Any) -> None:
    for _ in range(12):
        smu.send("BOGUS")
    assert smu.ask(":SYST:ERR:COUN?") == "10"
    assert smu.errors() == ['-113,"Undefined header"'] * 9 + ['-350,"Queue overflow"']


def test_status_registers(smu: Any) -> None:
    assert smu.ask("*ESR?") == "0"
    smu.send("BOGUS")
    smu.send(":SOUR:VOLT 5000")
    smu.send("*ESE 32")
    assert smu.ask("*STB?") == "36"  # error available + event summary
    assert smu.ask("*ESR?") == "48"  # command error + execution error, then cleared
    assert smu.ask("*ESR?") == "0"
    smu.send("*CLS")
    assert smu.ask("*STB?") == "0"
    assert smu.ask(":SYST:ERR?") == '0,"No error"'
    smu.send("*OPC")
    assert smu.ask("*ESR?;*ESE?;*TST?") == "1;32;0"


def test_local_control_refuses_settings_but_answers_queries(raw_sim: Callable[..., Any]) -> None:
    smu = raw_sim("keithley2410", terminator=b"\n", faults="local")
    smu.send(":SOUR:VOLT 10")
    smu.send("*RST")
    smu.send(":OUTP ON")
    assert smu.ask(":SOUR:VOLT?;:OUTP?") == "0.000000E+00;0"
    assert smu.errors() == ['-221,"Settings conflict"'] * 3
    smu.send("BOGUS")
    smu.send("*CLS")  # status commands still work
    assert smu.ask(":SYST:ERR?") == '0,"No error"'
    smu.sim.set_faults("local=0")
    smu.send(":SOUR:VOLT 10")
    assert smu.ask(":SOUR:VOLT?") == "1.000000E+01"


SCPI_SIMULATORS = [
    ("keithley2410", {"dialect": "2400"}, ":SOUR:VOLT 5000", ":SOUR:VOLT 100;:SOUR:VOLT:RANG 2"),
    ("keithley2410", {"dialect": "2410"}, ":SOUR:VOLT 5000", ":SOUR:VOLT 100;:SOUR:VOLT:RANG 2"),
    ("keithley2410", {"dialect": "2450"}, ":SOUR:VOLT 5000", ":SOUR:VOLT 100;:SOUR:VOLT:RANG 2"),
    ("hmp4040", {}, "VOLT 40", "ARB:STAR 1"),
]


@pytest.mark.parametrize(("kind", "options", "out_of_range", "conflict"), SCPI_SIMULATORS)
def test_every_scpi_simulator_answers_the_common_commands_and_errors(
    raw_sim: Callable[..., Any],
    kind: str,
    options: dict[str, Any],
    out_of_range: str,
    conflict: str,
) -> None:
    """*IDN?, *RST, *CLS, *OPC?, *ESR?, :SYST:ERR? and the manual's -113, -221, -222."""
    client = raw_sim(kind, terminator=b"\n", **options)
    assert len(client.ask("*IDN?").split(",")) == 4
    assert client.ask("*RST;*OPC?") == "1"
    client.send(":NO:SUCH:HEADER")
    client.send(out_of_range)
    client.send(conflict)
    assert client.ask("*ESR?") == str(32 + 16)  # command error, execution errors
    assert client.errors() == [
        '-113,"Undefined header"',
        '-222,"Data out of range"',
        '-221,"Settings conflict"',
    ]
    client.send("BOGUS;*CLS")  # the rest of the line is skipped
    assert client.ask(":SYST:ERR:COUN?;:SYST:VERS?") == "1;1999.0"
    client.send("*CLS")
    assert client.ask("*ESR?;:SYST:ERR?") == '0;0,"No error"'
