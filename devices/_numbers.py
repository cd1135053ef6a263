"""Strict number parsing shared by the reply parsers: a reply is a number, or it is garbled."""

from __future__ import annotations

import re

from teststand.errors import ReplyFormatError

_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def parse_number(text: str, what: str = "number") -> float:
    """A decimal number with optional sign and exponent; anything else is a ReplyFormatError."""
    stripped = text.strip(" ")
    if not _NUMBER.fullmatch(stripped):
        raise ReplyFormatError(f"expected a {what}, got {text!r}")
    return float(stripped)


def parse_integer(text: str, what: str = "integer") -> int:
    stripped = text.strip(" ")
    if not re.fullmatch(r"[+-]?[0-9]+", stripped):
        raise ReplyFormatError(f"expected an {what}, got {text!r}")
    return int(stripped)
