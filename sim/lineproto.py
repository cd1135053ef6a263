"""Helpers shared by the text-line simulators: strict number parsing, fixed-point formatting, and
the exception that turns a refused command into its error reply."""

from __future__ import annotations

import re

_DECIMAL = re.compile(r"[+-]?([0-9]+)(?:\.([0-9]*))?")
_INTEGER = re.compile(r"[+-]?[0-9]+")


class Refusal(Exception):
    """A command the instrument answers with an error; `reply` is the reply text to send."""

    def __init__(self, reply: str) -> None:
        super().__init__(reply)
        self.reply = reply


def parse_decimal(
    text: str, *, int_digits: int | None = None, frac_digits: int | None = None
) -> float | None:
    """A plain decimal (`-12`, `+3.5`, `20.`) within the digit limits, else None.

    Exponents, `nan`, `inf`, underscores and blanks are refused (Python's `float()` takes them).
    """
    match = _DECIMAL.fullmatch(text)
    if match is None:
        return None
    if int_digits is not None and len(match[1]) > int_digits:
        return None
    if frac_digits is not None and len(match[2] or "") > frac_digits:
        return None
    return float(text)


def parse_integer(text: str) -> int | None:
    """A plain integer with optional sign, else None."""
    return int(text) if _INTEGER.fullmatch(text) else None


def fixed(value: float, decimals: int = 2, int_digits: int = 1) -> str:
    """`value` with `decimals` decimals and at least `int_digits` integer digits (zero padded).

    A value that rounds to zero never reads `-0.00`; the sign is a leading `-` only.
    """
    rounded = round(value, decimals)
    if rounded == 0:
        rounded = 0.0
    width = int_digits + (decimals + 1 if decimals else 0)
    digits = f"{abs(rounded):0{width}.{decimals}f}"
    return f"-{digits}" if rounded < 0 else digits
