"""SCPI reply parsing shared by the Keithley and Rohde & Schwarz drivers."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ..errors import ReplyFormatError
from ._numbers import parse_integer, parse_number

#: A 2400-series reading of an element that was not measured (NaN) and of an overflow.
NOT_A_NUMBER = 9.91e37
OVERFLOW = 9.9e37


def parse_float(text: str) -> float:
    """One SCPI number; 9.91e37 reads as NaN and ±9.9e37 as ±inf."""
    value = parse_number(text)
    if math.isclose(abs(value), NOT_A_NUMBER, rel_tol=1e-6):
        return math.nan
    if math.isclose(abs(value), OVERFLOW, rel_tol=1e-6):
        return math.copysign(math.inf, value)
    return value


def parse_floats(text: str, count: int | None = None) -> list[float]:
    """Comma-separated numbers; with `count`, exactly that many."""
    values = [parse_float(item) for item in text.split(",")]
    if count is not None and len(values) != count:
        raise ReplyFormatError(f"expected {count} numbers, got {len(values)} in {text!r}")
    return values


def parse_bool(text: str) -> bool:
    value = text.strip(" ")
    if value in ("1", "ON"):
        return True
    if value in ("0", "OFF"):
        return False
    raise ReplyFormatError(f"expected 0 or 1, got {text!r}")


_ERROR = re.compile(r'([+-]?[0-9]+),"([\x20\x21\x23-\x7e]*)"')


def parse_error(text: str) -> tuple[int, str]:
    """A `:SYST:ERR?` reply such as `-113,"Undefined header"`; code 0 means no error."""
    match = _ERROR.fullmatch(text.strip(" "))
    if match is None:
        raise ReplyFormatError(f"not an error-queue reply: {text!r}")
    return parse_integer(match[1]), match[2]


@dataclass(frozen=True)
class Identity:
    manufacturer: str
    model: str
    serial: str
    firmware: str


def parse_idn(text: str) -> Identity:
    """A `*IDN?` reply: four comma-separated printable fields."""
    fields = [f.strip() for f in text.split(",")]
    printable = text.isascii() and text.isprintable()
    if not printable or len(fields) != 4 or not all(fields[:2]):
        raise ReplyFormatError(f"not an *IDN? reply: {text!r}")
    return Identity(*fields)
