"""The CAEN HV command language (803x and 14xx dialects): commands out, strict replies in."""

from __future__ import annotations

import re
from dataclasses import dataclass

from teststand.devices._numbers import parse_number
from teststand.errors import ReplyFormatError, ReplyRefused

ERROR_MEANINGS = {
    "CMD": "bad command format",
    "CH": "bad channel number",
    "PAR": "unknown parameter (or not allowed for this command)",
    "VAL": "value out of range",
    "LOC": "SET refused: the module is in LOCAL control; switch it to REMOTE",
}

_REPLY = re.compile(
    r"#(?:BD:(?P<board>[0-9]{2}),)?"
    r"(?:CMD:OK(?:,VAL:(?P<value>[\x20-\x22\x24-\x2b\x2d-\x7e]*))?|(?P<error>CMD|CH|PAR|VAL|LOC):ERR)"
)


def command(
    verb: str,
    parameter: str,
    *,
    channel: int | None = None,
    value: float | str | None = None,
    board: int | None = None,
) -> str:
    """`$[BD:xx,]CMD:verb[,CH:n],PAR:p[,VAL:v]`; board only for the 14xx dialect."""
    parts = [] if board is None else [f"BD:{board:02d}"]
    parts.append(f"CMD:{verb}")
    if channel is not None:
        parts.append(f"CH:{channel}")
    parts.append(f"PAR:{parameter}")
    if value is not None:
        parts.append(f"VAL:{value}")
    return "$" + ",".join(parts)


def parse_reply(text: str, board: int | None = None) -> str | None:
    """The VAL payload of an OK reply (None when it has none).

    Raises ReplyRefused for an error reply and ReplyFormatError for anything that is not a reply
    of this dialect, including a reply from another board.
    """
    match = _REPLY.fullmatch(text)
    if match is None:
        raise ReplyFormatError(f"not a CAEN reply: {text!r}")
    got = match["board"]
    if (board is None) != (got is None) or (got is not None and int(got) != board):
        raise ReplyFormatError(f"reply {text!r} is not from board {board}")
    if match["error"]:
        raise ReplyRefused(f"{match['error']}:ERR", ERROR_MEANINGS[match["error"]])
    return match["value"]


def parse_values(text: str, board: int | None = None) -> list[str]:
    """The `;`-separated values of a (group) read; an OK reply without VAL is garbled here."""
    value = parse_reply(text, board)
    if value is None or value == "":
        raise ReplyFormatError(f"expected a value in {text!r}")
    return value.split(";")


def parse_numbers(text: str, board: int | None = None, count: int | None = None) -> list[float]:
    """Numeric values of a read; with `count`, exactly that many (a group read of CH:8 or CH:4)."""
    values = [parse_number(v) for v in parse_values(text, board)]
    if count is not None and len(values) != count:
        raise ReplyFormatError(f"expected {count} values, got {len(values)} in {text!r}")
    return values


def parse_ok(text: str, board: int | None = None) -> None:
    """An acknowledgement of a SET: `#CMD:OK`."""
    if parse_reply(text, board) is not None:
        raise ReplyFormatError(f"expected a bare OK, got {text!r}")


@dataclass(frozen=True)
class ValueFormat:
    """The shape of one parameter's value, as the manual gives it (`XXXX.X`, `XXX`, `XXXXX`).

    Always checked: integer or decimal (a decimal has its point), or one of `choices`; the values
    of a group read share one width and one number of decimals. `strict` adds the manual's exact
    digit counts and refuses a sign (CAEN values are magnitudes).
    """

    digits: int = 0  # integer digits, zero padded
    decimals: tuple[int, ...] = ()  # allowed numbers of decimals; () for an integer
    choices: tuple[str, ...] = ()

    def check(self, value: str, strict: bool) -> None:
        if self.choices:
            if value not in self.choices:
                raise ReplyFormatError(f"expected one of {'/'.join(self.choices)}, got {value!r}")
            return
        sign = "" if strict else "[+-]?"
        digits = f"[0-9]{{{self.digits}}}" if strict else "[0-9]+"
        if self.decimals:
            allowed = f"{min(self.decimals)},{max(self.decimals)}" if strict else "1,"
            pattern = rf"{sign}{digits}\.[0-9]{{{allowed}}}"
        else:
            pattern = f"{sign}{digits}"
        if re.fullmatch(pattern, value) is None:
            raise ReplyFormatError(f"expected the format {self.example}, got {value!r}")

    @property
    def example(self) -> str:
        whole = "X" * self.digits
        return f"{whole}.{'X' * self.decimals[0]}" if self.decimals else whole


#: Reply formats per parameter (DT803x and N1470 manuals; sim/caen.py serves the same).
FORMATS: dict[str, ValueFormat] = {
    **dict.fromkeys(("VSET", "VMIN", "VMAX", "VMON", "TRIP"), ValueFormat(4, (1,))),
    "ISET": ValueFormat(4, (2,)),
    "IMON": ValueFormat(4, (2, 3)),  # IMRANGE HIGH: 2 decimals, LOW: 3
    "MAXV": ValueFormat(4),
    **dict.fromkeys(("RUP", "RDW", "RDWN", "RAMPDOWN"), ValueFormat(3)),
    "VDEC": ValueFormat(1),
    **dict.fromkeys(("STAT", "BDALARM", "BDSNUM"), ValueFormat(5)),
    "PDWN": ValueFormat(choices=("RAMP", "KILL")),
    "IMRANGE": ValueFormat(choices=("HIGH", "LOW")),
    "POL": ValueFormat(choices=("+", "-")),
}


def parse_parameter(
    text: str, parameter: str, count: int, board: int | None = None, strict: bool = True
) -> list[str]:
    """The `count` values of a read of `parameter`, each checked against its format.

    A truncated reply, a reply with noise in it, or the reply to a read of another parameter of
    another format is a ReplyFormatError, never a value. Parameters without a known format are
    only counted.
    """
    values = parse_values(text, board)
    if len(values) != count:
        raise ReplyFormatError(f"expected {count} values of {parameter}, got {text!r}")
    form = FORMATS.get(parameter)
    if form is None:
        return values
    for value in values:
        form.check(value, strict)
    one_decimals = len(form.decimals) <= 1  # IMON's decimals follow each channel's range
    if not form.choices and len({_shape(value, one_decimals) for value in values}) > 1:
        raise ReplyFormatError(f"the values of {parameter} differ in format in {text!r}")
    return values


def _shape(value: str, with_decimals: bool) -> tuple[int, int]:
    whole, _, fraction = value.lstrip("+-").partition(".")
    return len(whole), len(fraction) if with_decimals else 0
