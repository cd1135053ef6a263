"""The CAEN HV command language (803x and 14xx dialects): commands out, strict replies in."""

from __future__ import annotations

import re

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
