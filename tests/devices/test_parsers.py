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
from teststand.devices.keithley.protocol import parse_reading
from teststand.devices.lauda import protocol as lauda
from teststand.errors import ReplyFormatError, ReplyRefused

PARSERS: dict[str, Callable[[str], Any]] = {
    "caen.parse_reply": caen.parse_reply,
    "caen.parse_reply(board=3)": lambda t: caen.parse_reply(t, board=3),
    "caen.parse_numbers": lambda t: caen.parse_numbers(t, count=8),
    "caen.parse_ok": caen.parse_ok,
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


@pytest.mark.parametrize(
    ("name", "text", "expected"), [(n, t, e) for n, cases in VALID.items() for t, e in cases]
)
def test_valid_replies_parse(name: str, text: str, expected: Any) -> None:
    assert PARSERS[name](text) == expected


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
# The grammar of a well-formed reply, written here from PROTOCOLS.md independently of the
# parsers: random bytes that happen to match it may parse, nothing else may.
GRAMMAR: dict[str, str] = {
    "caen.parse_reply": rf"#CMD:OK(?:,VAL:{VALUE})?",
    "caen.parse_reply(board=3)": rf"#BD:03,CMD:OK(?:,VAL:{VALUE})?",
    "caen.parse_numbers": rf"#CMD:OK,VAL:{NUM}(?:;{NUM}){{7}}",
    "caen.parse_ok": "#CMD:OK",
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
}


@pytest.mark.parametrize("name", list(PARSERS))
@given(
    data=st.binary(max_size=64) | st.text(alphabet="#CMDOKVAL:,;0123456789.-+E Temp=", max_size=40)
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
