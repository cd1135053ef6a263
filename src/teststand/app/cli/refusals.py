"""Recognising an instrument's error reply in raw `teststand query` output, by the protocols'
own parsers (CAEN `#CH:ERR`, Lauda `ERR_3`, coldbox `ERR …`, a SCPI error-queue entry)."""

from __future__ import annotations

import re
from collections.abc import Callable

from teststand.devices.caen import protocol as caen
from teststand.devices.coldbox import protocol as coldbox
from teststand.devices.lauda import protocol as lauda
from teststand.devices.scpi import ERROR_HINTS, parse_error
from teststand.errors import ReplyFormatError, ReplyRefused

_BOARD = re.compile(r"#BD:([0-9]{2}),")


def _caen(text: str) -> object:
    board = _BOARD.match(text)
    return caen.parse_reply(text, int(board[1]) if board else None)


def _scpi(text: str) -> object:
    code, message = parse_error(text)
    if code != 0:
        raise ReplyRefused(str(code), ERROR_HINTS.get(code, message))
    return code


CHECKS: tuple[Callable[[str], object], ...] = (_caen, lauda.parse_text, coldbox.parse_ok, _scpi)


def refusal(reply: str) -> str | None:
    """What an error reply says (code and meaning), or None for any other reply."""
    for check in CHECKS:
        try:
            check(reply)
        except ReplyRefused as refused:
            return str(refused)
        except (ReplyFormatError, ValueError):
            continue
    return None
