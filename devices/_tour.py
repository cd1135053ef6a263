"""Shared pieces of the instruments' tours (`teststand demo --transport`): each device package's
`tour.exercise(link, say)` drives its instrument with raw protocol commands and says what it read.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from teststand.devices import scpi
from teststand.transport import Transport

Say = Callable[[str], None]
Exerciser = Callable[[Transport, Say], Awaitable[None]]


def identity(idn: scpi.Identity) -> str:
    return f"{idn.manufacturer} {idn.model}, serial {idn.serial}"


def row(values: list[float], unit: str) -> str:
    return " ".join(f"{v:8.2f}" for v in values) + f" {unit}"
