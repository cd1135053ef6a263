"""The coldbox line protocol: `get NAME` -> `NAME = VALUE`, `set`/`cmd` -> `OK`, errors `ERR …`."""

from __future__ import annotations

import re
from collections.abc import Callable

from ...errors import ReplyFormatError, ReplyRefused
from .._numbers import parse_number

_ERROR = re.compile(r"ERR ([\x20-\x7e]+)")


def _checked(text: str) -> str:
    if not (text.isascii() and text.isprintable()):
        raise ReplyFormatError(f"not a coldbox reply: {text!r}")
    error = _ERROR.fullmatch(text)
    if error:
        raise ReplyRefused("ERR", error[1])
    return text


def parse_value(text: str, name: str) -> str:
    """The VALUE of `NAME = VALUE`; a reply naming another quantity is garbled."""
    name_part, separator, value = _checked(text).partition(" = ")
    if not separator or name_part.lower() != name.lower() or not value:
        raise ReplyFormatError(f"expected '{name} = VALUE', got {text!r}")
    return value


def number_parser(name: str) -> Callable[[str], float]:
    """A parser for a numeric reading such as `Temp = -12.34`."""
    return lambda text: parse_number(parse_value(text, name), name)


def numbers_parser(name: str, count: int) -> Callable[[str], list[float]]:
    """A parser for a per-TEC list such as `Temp = -19.86,-19.80,…` (channel 0 = all)."""

    def parse(text: str) -> list[float]:
        values = [parse_number(v, name) for v in parse_value(text, name).split(",")]
        if len(values) != count:
            raise ReplyFormatError(f"expected {count} values of {name}, got {text!r}")
        return values

    return parse


def flag_parser(name: str, true: str, false: str) -> Callable[[str], bool]:
    """A parser for a two-state reading such as `Lid = closed` or `valve0 = on`."""

    def parse(text: str) -> bool:
        value = parse_value(text, name)
        if value not in (true, false):
            raise ReplyFormatError(f"expected {name} {true} or {false}, got {text!r}")
        return value == true

    return parse


def parse_ok(text: str) -> None:
    if _checked(text) != "OK":
        raise ReplyFormatError(f"expected OK, got {text!r}")
