"""Reply parsers: valid replies parse; random or corrupted bytes never become a value."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from teststand.devices import scpi
from teststand.devices.caen import protocol as caen
from teststand.devices.coldbox import protocol as coldbox
from teststand.devices.hmp4040 import protocol as hmp
from teststand.devices.keithley.client import parse_elements, parse_reading_2450, parse_settings
from teststand.devices.keithley.protocol import parse_reading
from teststand.devices.lauda import protocol as lauda
from teststand.devices.scpi import KEITHLEY_READING
from teststand.errors import ReplyFormatError, ReplyRefused


def selected(parse: Callable[[list[str]], Any], count: int) -> Callable[[str], Any]:
    """An HMP reply parser for channel 2: the value, or an error when another channel replied."""

    def value(text: str) -> Any:
        channel, result = hmp.parse_selected(text, count, 2, parse)
        if result is None:
            raise ReplyFormatError(f"channel {channel} replied")
        return result

    return value


STATUS = (
    "Status = Temp=20.00,20.00,20.00,20.00,20.00,20.00,20.00,-1.50;"
    "Temp_Set=20.00,20.00,20.00,20.00,20.00,20.00,20.00,-20.00;"
    "Power=off,off,off,off,off,off,off,on;Temp_Air=20.00;Temp_W=15.00;RH=49.15;DP=9.00;"
    "Lid=closed;valve0=off;Flow=0.0;Interlock=ok"
)

PARSERS: dict[str, Callable[[str], Any]] = {
    "caen.parse_reply": caen.parse_reply,
    "caen.parse_reply(board=3)": lambda t: caen.parse_reply(t, board=3),
    "caen.parse_numbers": lambda t: caen.parse_numbers(t, count=8),
    "caen.parse_ok": caen.parse_ok,
    "caen.parse_values": caen.parse_values,
    "caen.VMON": lambda t: caen.parse_parameter(t, "VMON", 1),
    "caen.STAT(8)": lambda t: caen.parse_parameter(t, "STAT", 8),
    "caen.IMON(4,lenient)": lambda t: caen.parse_parameter(t, "IMON", 4, strict=False),
    "lauda.temperature(strict)": lambda t: lauda.parse_temperature(t, strict=True),
    "lauda.parse_stat": lauda.parse_stat,
    "lauda.parse_text": lauda.parse_text,
    "hmp.measure": selected(hmp.parse_measurement, 2),
    "hmp.settings": selected(hmp.parse_settings, 3),
    "keithley.parse_reading_2450": parse_reading_2450,
    "keithley.reading(strict)": lambda t: parse_reading(
        t, ("VOLT", "CURR", "STAT"), KEITHLEY_READING
    ),
    "hmp.measure(strict)": selected(lambda r: hmp.parse_measurement(r, strict=True), 2),
    "keithley.parse_elements": parse_elements,
    "keithley.parse_settings": parse_settings,
    "coldbox.parse_status": coldbox.parse_status,
    "lauda.parse_number": lauda.parse_number,
    "lauda.parse_integer": lauda.parse_integer,
    "lauda.parse_ok": lauda.parse_ok,
    "scpi.parse_float": scpi.parse_float,
    "scpi.parse_floats": scpi.parse_floats,
    "scpi.parse_bool": scpi.parse_bool,
    "scpi.parse_error": scpi.parse_error,
    "scpi.parse_idn": scpi.parse_idn,
    "keithley.parse_reading": parse_reading,
    "coldbox.temp": coldbox.number_parser("Temp"),
    "coldbox.temps": coldbox.numbers_parser("Temp", 8),
    "coldbox.lid": coldbox.flag_parser("Lid", "closed", "open"),
    "coldbox.parse_ok": coldbox.parse_ok,
}

VALID: dict[str, list[tuple[str, Any]]] = {
    "caen.parse_reply": [
        ("#CMD:OK", None),
        ("#CMD:OK,VAL:0123.4", "0123.4"),
        ("#CMD:OK,VAL:+", "+"),
    ],
    "caen.parse_reply(board=3)": [("#BD:03,CMD:OK,VAL:12", "12")],
    "caen.parse_numbers": [("#CMD:OK,VAL:1;2;3;4;5;6;7;8.5", [1, 2, 3, 4, 5, 6, 7, 8.5])],
    "caen.parse_ok": [("#CMD:OK", None)],
    "caen.parse_values": [("#CMD:OK,VAL:0123.4;+;00005", ["0123.4", "+", "00005"])],
    "caen.VMON": [("#CMD:OK,VAL:0123.4", ["0123.4"])],
    "caen.STAT(8)": [
        ("#CMD:OK,VAL:" + ";".join(["00005"] * 7 + ["00064"]), ["00005"] * 7 + ["00064"])
    ],
    "caen.IMON(4,lenient)": [("#CMD:OK,VAL:1.23;1.234;2.00;0.10", None)],
    "lauda.temperature(strict)": [("020.00", 20.0), ("-010.50", -10.5), ("A005_1234.00", 1234)],
    "lauda.parse_stat": [("0100000", frozenset({"alarm"})), ("A005_0000000", frozenset())],
    "lauda.parse_text": [("RP 855 C", "RP 855 C"), ("A005_1.36", "1.36")],
    "hmp.measure": [("2;12.0000;0.1000", hmp.Measurement(12.0, 0.1))],
    "hmp.settings": [("2;5.0000;1.0000;1", hmp.ChannelSettings(5.0, 1.0, True))],
    "keithley.reading(strict)": [("+1.000000E+02,-1.000000E-04,+8.000000E+00", None)],
    "hmp.measure(strict)": [("2;12.000;0.1000", hmp.Measurement(12.0, 0.1))],
    "keithley.parse_reading_2450": [("+1.0E+02,-1.0E-06;0", None)],
    "keithley.parse_elements": [
        ("VOLT,CURR,STAT", ("VOLT", "CURR", "STAT")),
        ("VOLTage,CURRent", ("VOLT", "CURR")),
    ],
    "coldbox.parse_status": [(STATUS, None)],
    "keithley.parse_settings": [
        ('VOLT;"CURR:DC";+1.000000E-04;+1.000000E+00;+2.100000E+02;1', None),
        ('VOLT;"VOLT:DC","CURR:DC";1e-4;1;200;0', None),
    ],
    "lauda.parse_number": [("020.00", 20.0), ("-12.5", -12.5), ("A005_ 19.99", 19.99)],
    "lauda.parse_integer": [("1", 1), ("0", 0)],
    "lauda.parse_ok": [("OK", None)],
    "scpi.parse_float": [("+1.000000E+02", 100.0), ("-1.2e-06", -1.2e-6)],
    "scpi.parse_floats": [("1,2.5,-3e1", [1.0, 2.5, -30.0])],
    "scpi.parse_bool": [("1", True), ("0", False)],
    "scpi.parse_error": [
        ('0,"No error"', (0, "No error")),
        ('-113,"Undefined header"', (-113, "Undefined header")),
    ],
}

TYPED_ERRORS = (ReplyFormatError, ReplyRefused)
PRINTABLE = "".join(map(chr, range(0x20, 0x7F)))


@pytest.mark.parametrize(
    ("name", "text", "expected"), [(n, t, e) for n, cases in VALID.items() for t, e in cases]
)
def test_valid_replies_parse(name: str, text: str, expected: Any) -> None:
    value = PARSERS[name](text)
    if expected is not None or name.endswith("parse_ok") or name.startswith("caen.parse_reply"):
        assert value == expected


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("#CMD:ERR", "CMD:ERR"),
        ("#CH:ERR", "CH:ERR"),
        ("#PAR:ERR", "PAR:ERR"),
        ("#VAL:ERR", "VAL:ERR"),
        ("#LOC:ERR", "LOC:ERR"),
    ],
)
def test_caen_error_replies_are_refusals(text: str, code: str) -> None:
    with pytest.raises(ReplyRefused) as info:
        caen.parse_reply(text)
    assert info.value.code == code
    with pytest.raises(ReplyRefused):
        caen.parse_reply("#BD:01," + text[1:], board=1)


def test_caen_reply_from_another_board_is_not_ours() -> None:
    with pytest.raises(ReplyFormatError):
        caen.parse_reply("#BD:02,CMD:OK,VAL:1", board=1)
    with pytest.raises(ReplyFormatError):
        caen.parse_reply("#BD:02,CMD:OK,VAL:1")


def test_coldbox_errors_are_refusals_and_other_names_garbled() -> None:
    with pytest.raises(ReplyRefused, match="local control"):
        coldbox.parse_ok("ERR local control")
    with pytest.raises(ReplyFormatError):
        coldbox.number_parser("Temp")("RH = 3.47")


def test_lauda_error_codes_are_refusals() -> None:
    with pytest.raises(ReplyRefused, match="ERR_3: wrong command"):
        lauda.parse_number("ERR_3")


def test_keithley_reading_missing_elements_and_compliance() -> None:
    reading = parse_reading("+1.000000E+02,-1.000000E-04,+9.910000E+37,+1.2E+01,+8.000000E+00")
    assert reading.voltage == 100.0 and reading.current == -1e-4
    assert math.isnan(reading.resistance) and reading.in_compliance
    assert not parse_reading("1,2", ("VOLT", "CURR")).in_compliance
    # The unit sends elements in its fixed order, whatever order :FORM:ELEM named them in.
    assert parse_reading("1,2", ("CURR", "VOLT")).voltage == 1.0


def test_command_formatting() -> None:
    assert caen.command("MON", "VMON", channel=8) == "$CMD:MON,CH:8,PAR:VMON"
    assert (
        caen.command("SET", "VSET", channel=1, value=100, board=2)
        == "$BD:02,CMD:SET,CH:1,PAR:VSET,VAL:100"
    )


NUM = r" *[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)? *"
VALUE = r"[\x20-\x22\x24-\x2b\x2d-\x7e]*"
NR3 = r" *[+-][0-9]\.[0-9]{6}E[+-][0-9]{2} *"
ELEMENT = r"\s*(?:VOLT|CURR|RES|TIME|STAT|VOLTAGE|CURRENT|RESISTANCE|STATUS)\s*"
# The grammar of a well-formed reply, written here from PROTOCOLS.md independently of the
# parsers: random bytes that happen to match it may parse, nothing else may.
GRAMMAR: dict[str, str] = {
    "caen.parse_reply": rf"#CMD:OK(?:,VAL:{VALUE})?",
    "caen.parse_reply(board=3)": rf"#BD:03,CMD:OK(?:,VAL:{VALUE})?",
    "caen.parse_numbers": rf"#CMD:OK,VAL:{NUM}(?:;{NUM}){{7}}",
    "caen.parse_ok": "#CMD:OK",
    "caen.parse_values": rf"#CMD:OK,VAL:{VALUE}",
    "lauda.parse_number": rf"(?:A[0-9]{{3}}_)?{NUM}",
    "lauda.parse_integer": r"(?:A[0-9]{3}_)? *[+-]?[0-9]+ *",
    "lauda.parse_ok": r"(?:A[0-9]{3}_)? *OK *",
    "scpi.parse_float": NUM,
    "scpi.parse_floats": rf"{NUM}(?:,{NUM})*",
    "scpi.parse_bool": r" *(?:0|1|ON|OFF) *",
    "scpi.parse_error": r' *[+-]?[0-9]+,"[\x20\x21\x23-\x7e]*" *',
    "scpi.parse_idn": r"[\x20-\x2b\x2d-\x7e]+(?:,[\x20-\x2b\x2d-\x7e]*){3}",
    "keithley.parse_reading": rf"{NUM}(?:,{NUM}){{4}}",
    "coldbox.temp": rf"Temp = {NUM}",
    "coldbox.temps": rf"Temp = {NUM}(?:,{NUM}){{7}}",
    "coldbox.lid": "Lid = (?:open|closed)",
    "coldbox.parse_ok": "OK",
    "caen.VMON": r"#CMD:OK,VAL:[0-9]{4}\.[0-9]",
    "caen.STAT(8)": r"#CMD:OK,VAL:[0-9]{5}(?:;[0-9]{5}){7}",
    "caen.IMON(4,lenient)": r"#CMD:OK,VAL:[+-]?[0-9]+\.[0-9]+(?:;[+-]?[0-9]+\.[0-9]+){3}",
    "lauda.temperature(strict)": r" *(?:A[0-9]{3}_)?-?(?:[0-9]{3}|[1-9][0-9]{3})\.[0-9]{2} *",
    "lauda.parse_stat": r" *(?:A[0-9]{3}_)?[01]{7} *",
    "lauda.parse_text": r" *(?:A[0-9]{3}_)?[\x20-\x7e]+",
    "hmp.measure": rf" *[+-]?0*2 *;{NUM};{NUM}",
    "hmp.settings": rf" *[+-]?0*2 *;{NUM};{NUM}; *(?:0|1|ON|OFF) *",
    "keithley.reading(strict)": rf"{NR3}(?:,{NR3}){{2}}",
    "hmp.measure(strict)": r" *[+-]?0*2 *; *[0-9]{1,2}\.[0-9]{3} *; *[0-9]{1,2}\.[0-9]{4} *",
    "keithley.parse_reading_2450": rf"{NUM},{NUM}; *(?:0|1|ON|OFF) *",
    "keithley.parse_elements": f"(?i){ELEMENT}(?:,{ELEMENT})*",
    "keithley.parse_settings": (
        rf' *[A-Za-z]+ *; *"[A-Za-z:]+"(?:,"[A-Za-z:]+")* *;{NUM};{NUM};{NUM}; *(?:0|1|ON|OFF) *'
    ),
    "coldbox.parse_status": (
        rf"(?i:status) = Temp={NUM}(?:,{NUM}){{7}};Temp_Set={NUM}(?:,{NUM}){{7}};"
        r"Power=(?:on|off)(?:,(?:on|off)){7};"
        rf"Temp_Air={NUM};Temp_W={NUM};RH={NUM};DP={NUM};Lid=(?:open|closed);valve0=(?:on|off);"
        rf"Flow={NUM};Interlock=(?:ok|tripped)"
    ),
}


def near(text: str) -> st.SearchStrategy[str]:
    """Valid replies with a few characters inserted, removed or changed: they sit close to the
    grammar, where random text rarely gets."""
    edits = st.lists(
        st.tuples(st.integers(0, len(text)), st.integers(0, 3), st.text(PRINTABLE, max_size=3)),
        max_size=3,
    )

    def apply(changes: list[tuple[int, int, str]]) -> str:
        result = text
        for position, removed, inserted in changes:
            result = result[:position] + inserted + result[position + removed :]
        return result

    return edits.map(apply)


@pytest.mark.parametrize("name", list(PARSERS))
@given(
    data=st.binary(max_size=64)
    | st.text(alphabet="#CMDOKVAL:,;0123456789.-+E Temp=", max_size=40)
    | st.sampled_from([t for cases in VALID.values() for t, _ in cases]).flatmap(near)
)
def test_random_bytes_never_become_a_value(name: str, data: bytes | str) -> None:
    text = data.decode("latin-1") if isinstance(data, bytes) else data
    try:
        PARSERS[name](text)
    except TYPED_ERRORS:
        return
    assert re.fullmatch(GRAMMAR[name], text), f"{name} accepted {text!r}"


@pytest.mark.parametrize(("name", "text"), [(n, t) for n, cases in VALID.items() for t, _ in cases])
@given(
    position=st.integers(min_value=0, max_value=200),
    noise=st.characters(min_codepoint=0x80, max_codepoint=0xFF),
)
def test_line_noise_in_a_valid_reply_is_rejected(
    name: str, text: str, position: int, noise: str
) -> None:
    index = position % len(text)
    corrupted = text[:index] + noise + text[index + 1 :]
    with pytest.raises(TYPED_ERRORS):
        PARSERS[name](corrupted)


# Fixed-width formats only: an HMP value (`12.000`) that loses its leading digit still looks
# like a value (`2.000`), and the manual gives no width to check it against.
STRICT = ["caen.VMON", "caen.STAT(8)", "lauda.temperature(strict)", "keithley.reading(strict)"]


@pytest.mark.parametrize("name", STRICT)
@given(data=st.data())
def test_strict_replies_that_lost_or_gained_bytes_never_give_another_value(
    name: str, data: st.DataObject
) -> None:
    text = VALID[name][0][0]
    start = data.draw(st.integers(1, len(text) - 1))
    if data.draw(st.booleans()):  # bytes lost mid-line, as the `truncate` fault does
        damaged = text[:start] + text[data.draw(st.integers(start + 1, len(text))) :]
    else:  # printable noise gained, as the `noise` fault does
        damaged = (
            text[:start] + data.draw(st.text(PRINTABLE, min_size=1, max_size=3)) + text[start:]
        )
    try:
        value = PARSERS[name](damaged)
    except ReplyFormatError:
        return
    # Only damage that changes nothing may pass (a blank, a leading zero of a channel number).
    assert value == PARSERS[name](text), f"{name}: {damaged!r} gave {value!r}"


@pytest.mark.parametrize(
    ("parameter", "other"),
    [
        ("VMON", "#CMD:OK,VAL:010"),
        ("RUP", "#CMD:OK,VAL:00005"),
        ("STAT", "#CMD:OK,VAL:0100.00"),
        ("ISET", "#CMD:OK,VAL:0123.4"),
        ("MAXV", "#CMD:OK,VAL:RAMP"),
        ("PDWN", "#CMD:OK,VAL:4000"),
    ],
)
def test_another_parameters_reply_is_garbled_not_a_value(parameter: str, other: str) -> None:
    with pytest.raises(ReplyFormatError):
        caen.parse_parameter(other, parameter, 1)


def test_a_group_reply_whose_values_differ_in_format_is_garbled() -> None:
    # Lenient: any width, but one width per reply: a value that lost a digit stands out.
    with pytest.raises(ReplyFormatError, match="differ in format"):
        caen.parse_parameter("#CMD:OK,VAL:0123.4;012.4;0000.0;0000.0", "VMON", 4, strict=False)
    with pytest.raises(ReplyFormatError, match=r"XXXX\.X"):
        caen.parse_parameter("#CMD:OK,VAL:123.4", "VMON", 1)
    assert caen.parse_parameter("#CMD:OK,VAL:123.4", "VMON", 1, strict=False) == ["123.4"]
    # IMON's decimals follow each channel's range (HIGH: 2, LOW: 3).
    assert caen.parse_parameter("#CMD:OK,VAL:0001.23;0001.234", "IMON", 2) == [
        "0001.23",
        "0001.234",
    ]


@pytest.mark.parametrize("damaged", ["20.00", "020.0", "0200.00", "020", "2.000", "0020.00"])
def test_lauda_temperatures_that_lost_or_gained_a_digit_are_garbled(damaged: str) -> None:
    with pytest.raises(ReplyFormatError):
        lauda.parse_temperature(damaged, strict=True)
    assert lauda.parse_temperature("20.5") == 20.5  # lenient: any decimal with its point
    with pytest.raises(ReplyFormatError):
        lauda.parse_temperature("20")  # an integer reply belongs to another command


@pytest.mark.parametrize(
    "damaged", ["Temp = -12.3", "Temp = -12", "Temp = -12.345", "Flow = 20.00"]
)
def test_coldbox_readings_with_other_decimals_are_garbled(damaged: str) -> None:
    name = damaged.split(" ")[0]
    with pytest.raises(ReplyFormatError):
        coldbox.number_parser(name)(damaged)
    with pytest.raises(ReplyFormatError):
        coldbox.parse_status(STATUS.replace("RH=49.15", "RH=49.1"))
