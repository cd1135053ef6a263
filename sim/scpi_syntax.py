"""SCPI syntax shared by the SCPI simulators: error kinds, header patterns and parameter values.

The rules (IEEE 488.2 / SCPI-99 as far as a driver sees them) are in `teststand.sim.scpi`'s
docstring.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

# -- errors ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ErrorKind:
    """An entry of the error queue: SCPI code and message, shown as `-113,"Undefined header"`."""

    code: int
    message: str

    def __str__(self) -> str:
        return f'{self.code},"{self.message}"'


NO_ERROR = ErrorKind(0, "No error")
SYNTAX_ERROR = ErrorKind(-102, "Syntax error")
DATA_TYPE_ERROR = ErrorKind(-104, "Data type error")
PARAMETER_NOT_ALLOWED = ErrorKind(-108, "Parameter not allowed")
MISSING_PARAMETER = ErrorKind(-109, "Missing parameter")
UNDEFINED_HEADER = ErrorKind(-113, "Undefined header")
SETTINGS_CONFLICT = ErrorKind(-221, "Settings conflict")
DATA_OUT_OF_RANGE = ErrorKind(-222, "Data out of range")
ILLEGAL_PARAMETER_VALUE = ErrorKind(-224, "Illegal parameter value")
QUEUE_OVERFLOW = ErrorKind(-350, "Queue overflow")


class ScpiError(Exception):
    """Raised by a handler or the parser: the command is dropped and `kind` is queued."""

    def __init__(self, kind: ErrorKind) -> None:
        super().__init__(str(kind))
        self.kind = kind


def event_status_bit(code: int) -> int:
    """The *ESR bit an error sets: 32 command, 16 execution, 8 device-specific, 4 query error."""
    if -199 <= code <= -100:
        return 32
    if -299 <= code <= -200:
        return 16
    if -499 <= code <= -400:
        return 4
    return 8 if code != 0 else 0


# -- patterns and mnemonics --------------------------------------------------------------------

_PATTERN_TOKEN = re.compile(r"\[|\]|:|\*|#|[A-Za-z][A-Za-z0-9]*|[0-9]+")


def short_form(spelling: str) -> str:
    """The short form of a manual spelling: its upper-case letters and digits (`NSELect` → NSEL)."""
    return "".join(char for char in spelling if not char.islower())


def _keyword_regex(spelling: str) -> str:
    full, short = spelling.upper(), short_form(spelling)
    return full if full == short else f"(?:{full}|{short})"


@functools.cache
def compile_pattern(pattern: str) -> re.Pattern[str]:
    """The regex of a command pattern; it fully matches an upper-cased header without `?`."""
    text = pattern if pattern.startswith((":", "[", "*")) else ":" + pattern
    parts: list[str] = []
    position = 0
    for token in _PATTERN_TOKEN.finditer(text):
        if token.start() != position:
            break
        position = token.end()
        parts.append(_token_regex(token.group()))
    if position != len(text):
        raise ValueError(f"bad SCPI pattern {pattern!r} at {text[position:]!r}")
    return re.compile("".join(parts))


def _token_regex(token: str) -> str:
    if token == "[":
        return "(?:"
    if token == "]":
        return ")?"
    if token == "#":
        return "([0-9]*)"
    if token[0].isalpha():
        return _keyword_regex(token)
    return re.escape(token)


@functools.cache
def _mnemonic(spelling: str) -> re.Pattern[str]:
    return re.compile(_keyword_regex(spelling), re.IGNORECASE)


def mnemonic_matches(spelling: str, text: str) -> bool:
    """Whether `text` is the short or long form of `spelling` (`FRONt`: FRON or FRONT)."""
    return _mnemonic(spelling).fullmatch(text) is not None


# -- parameters --------------------------------------------------------------------------------

_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Limits:
    """The range of a numeric parameter and the values of MINimum, MAXimum and DEFault."""

    low: float
    high: float
    default: float

    def special(self, word: str) -> float:
        """The value of MIN, MAX or DEF; -224 for another mnemonic."""
        choice = to_choice(word, ("MINimum", "MAXimum", "DEFault"))
        return {"MINimum": self.low, "MAXimum": self.high, "DEFault": self.default}[choice]


def is_number(text: str) -> bool:
    return _NUMBER.fullmatch(text) is not None


def to_number(text: str, limits: Limits | None = None) -> float:
    """A decimal number (`1`, `-2.5`, `1e-6`) or, with `limits`, MIN/MAX/DEF; checked in range."""
    if is_number(text):
        value = float(text)
        if limits is not None and not limits.low <= value <= limits.high:
            raise ScpiError(DATA_OUT_OF_RANGE)
        return value
    if limits is not None and _WORD.fullmatch(text):
        try:
            return limits.special(text)
        except ScpiError:
            pass
    raise ScpiError(DATA_TYPE_ERROR)


def to_bool(text: str) -> bool:
    """ON/OFF or a number (non-zero after rounding is ON)."""
    if is_number(text):
        return round(float(text)) != 0
    return to_choice(text, ("ON", "OFF")) == "ON"


def to_choice(text: str, choices: Sequence[str]) -> str:
    """The spelling in `choices` that `text` names in short or long form."""
    if not _WORD.fullmatch(text):
        raise ScpiError(DATA_TYPE_ERROR)
    for spelling in choices:
        if mnemonic_matches(spelling, text):
            return spelling
    raise ScpiError(ILLEGAL_PARAMETER_VALUE)


def to_string(text: str) -> str:
    """The content of a string parameter in double or single quotes (a doubled quote is one)."""
    if len(text) >= 2 and text[0] in "\"'" and text[-1] == text[0]:
        return text[1:-1].replace(text[0] * 2, text[0])
    raise ScpiError(DATA_TYPE_ERROR)


def split_outside_quotes(text: str, separator: str) -> list[str]:
    """Split at `separator` where it is not inside quotes; -102 on an unclosed quote."""
    parts: list[str] = []
    quote = ""
    start = 0
    for index, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char == separator:
            parts.append(text[start:index])
            start = index + 1
    if quote:
        raise ScpiError(SYNTAX_ERROR)
    parts.append(text[start:])
    return parts


def parse_arguments(text: str) -> tuple[str, ...]:
    """The comma-separated parameters of a command, stripped; -102 on an empty one."""
    if not text.strip():
        return ()
    arguments = tuple(part.strip() for part in split_outside_quotes(text, ","))
    if not all(arguments):
        raise ScpiError(SYNTAX_ERROR)
    return arguments
