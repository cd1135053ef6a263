"""CAEN command lines: `$K:V,...` fields parsed into a command, and the `<code>:ERR` refusal.

The order in which fields are checked is described in `teststand.sim.caen`'s docstring.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
ADDRESS = re.compile(r"[0-9]{1,2}")
DIGITS = re.compile(r"[0-9]{1,3}")
_KEY_ORDER = ("CMD", "CH", "PAR", "VAL")
_VERBS = ("MON", "SET", "INFO")


class Refusal(Exception):
    """A command the unit answers with `<code>:ERR`."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class Command:
    verb: str
    channel: str | None
    parameter: str | None
    value: str | None


def split_fields(line: str) -> list[tuple[str, str]]:
    """`$K:V,K:V,...` as (key, value) pairs, or `Refusal("CMD")`."""
    text = line.strip()
    if not text.startswith("$"):
        raise Refusal("CMD")
    fields = []
    for item in text[1:].split(","):
        key, colon, value = item.partition(":")
        if not colon:
            raise Refusal("CMD")
        fields.append((key, value))
    return fields


def parse(fields: list[tuple[str, str]]) -> Command:
    """The command in `CMD[,CH][,PAR][,VAL]` fields (in that order), or `Refusal("CMD")`."""
    keys = [key for key, _ in fields]
    if not keys or keys[0] != "CMD" or any(key not in _KEY_ORDER for key in keys):
        raise Refusal("CMD")
    positions = [_KEY_ORDER.index(key) for key in keys]
    if positions != sorted(set(positions)):
        raise Refusal("CMD")
    values = dict(fields)
    verb = values["CMD"]
    if verb not in _VERBS or ("VAL" in values and verb != "SET"):
        raise Refusal("CMD")
    return Command(verb, values.get("CH"), values.get("PAR"), values.get("VAL"))
