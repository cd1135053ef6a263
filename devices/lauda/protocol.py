"""The Lauda command set: replies are a value, `OK`, or `ERR_n`."""

from __future__ import annotations

import re

from ...errors import ReplyFormatError, ReplyRefused
from .. import _numbers

ERROR_MEANINGS = {
    2: "input or buffer overflow",
    3: "wrong command",
    5: "syntax error in value",
    6: "illegal value",
    8: "module or value not present",
    32: "upper limit TiH must be above lower limit TiL",
    33: "no external temperature sensor",
    36: "input not possible now (e.g. LOCAL control)",
    38: "too many set point changes in one hour",
}

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


def parse_integer(text: str) -> int:
    return _numbers.parse_integer(_payload(text))


def parse_ok(text: str) -> None:
    if _payload(text) != "OK":
        raise ReplyFormatError(f"expected OK, got {text!r}")


def parse_text(text: str) -> str:
    return _payload(text)
