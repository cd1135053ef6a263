"""The Lauda command set: replies are a value, `OK`, or `ERR_n`."""

from __future__ import annotations

import re

from teststand.devices import _numbers
from teststand.errors import ReplyFormatError, ReplyRefused

ERROR_MEANINGS = {
    2: "input or buffer overflow",
    3: "wrong command",
    5: "syntax error in value",
    6: "illegal value",
    8: "module or value not present",
    32: "upper limit TiH must be above lower limit TiL",
    33: "no external temperature sensor",
    36: (
        "input not possible now: the chiller is in LOCAL control (or its keys are locked); "
        "switch it to remote control at its panel and retry"
    ),
    38: "too many set point changes in one hour",
}

#: The `STAT` reply's seven characters, first to last.
STAT_FLAGS = (
    "error",
    "alarm",
    "warning",
    "over_temperature",
    "low_level",
    "high_level",
    "no_external_value",
)
#: Temperatures are written with up to 4 digits before and 2 after the decimal point.
MAX_WRITTEN = 9999.99

_PREFIX = re.compile(r"A[0-9]{3}_")
_ERROR = re.compile(r"ERR_([0-9]{1,3})")


def _payload(text: str) -> str:
    """Strip an RS-485 address prefix and raise for error replies."""
    body = text.strip(" ")
    if _PREFIX.match(body):
        body = body[5:]
    error = _ERROR.fullmatch(body)
    if error:
        code = int(error[1])
        raise ReplyRefused(f"ERR_{code}", ERROR_MEANINGS.get(code, "error"))
    if not body or not (body.isascii() and body.isprintable()):
        raise ReplyFormatError(f"not a Lauda reply: {text!r}")
    return body


def parse_number(text: str) -> float:
    return _numbers.parse_number(_payload(text))


#: A temperature reply: a decimal with its point (always); strictly, as the manual's examples
#: and the simulator write it: three integer digits (four from 1000) and two decimals, `-010.50`.
_TEMPERATURE = re.compile(r"[+-]?[0-9]+\.[0-9]+")
_TEMPERATURE_STRICT = re.compile(r"-?(?:[0-9]{3}|[1-9][0-9]{3})\.[0-9]{2}")


def parse_temperature(text: str, strict: bool = False) -> float:
    """A temperature reply (`IN_PV_00`, `IN_SP_00`, …), °C: an integer, a value without its
    decimals, or (strictly) a value that lost or gained a digit is garbled."""
    body = _payload(text)
    if (_TEMPERATURE_STRICT if strict else _TEMPERATURE).fullmatch(body) is None:
        raise ReplyFormatError(f"expected a temperature such as 020.00, got {text!r}")
    return float(body)


def parse_integer(text: str) -> int:
    return _numbers.parse_integer(_payload(text))


def parse_ok(text: str) -> None:
    if _payload(text) != "OK":
        raise ReplyFormatError(f"expected OK, got {text!r}")


def parse_text(text: str) -> str:
    return _payload(text)


def parse_stat(text: str) -> frozenset[str]:
    """The `STAT` reply (seven 0/1 characters) as the set of raised flag names."""
    body = _payload(text)
    if len(body) != len(STAT_FLAGS) or set(body) - {"0", "1"}:
        raise ReplyFormatError(f"expected seven 0/1 status characters, got {text!r}")
    return frozenset(name for name, bit in zip(STAT_FLAGS, body, strict=True) if bit == "1")


def format_temperature(value: float) -> str:
    """A temperature as the chiller reads it: two decimals, sign only when negative."""
    if not -MAX_WRITTEN <= value <= MAX_WRITTEN:
        raise ValueError(f"{value} is outside ±{MAX_WRITTEN}, the command's number format")
    text = f"{value:.2f}"
    return "0.00" if text == "-0.00" else text
