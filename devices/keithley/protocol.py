"""Keithley `:READ?` readings in the order set by `:FORM:ELEM`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ...errors import ReplyFormatError
from ..scpi import parse_floats

ELEMENTS = ("VOLT", "CURR", "RES", "TIME", "STAT")
#: Bit of the 2400's STAT element set while the source is in compliance.
COMPLIANCE_BIT = 3


@dataclass(frozen=True)
class Reading:
    voltage: float
    current: float
    resistance: float = math.nan
    time: float = math.nan
    status: int = 0

    @property
    def in_compliance(self) -> bool:
        return bool(self.status >> COMPLIANCE_BIT & 1)


def parse_reading(text: str, elements: Sequence[str] = ELEMENTS) -> Reading:
    """Parse a `:READ?` reply holding `elements` in that order (VOLT and CURR required)."""
    unknown = set(elements) - set(ELEMENTS)
    if unknown or not {"VOLT", "CURR"} <= set(elements):
        raise ValueError(f"elements must include VOLT and CURR from {ELEMENTS}, got {elements}")
    values = dict(zip(elements, parse_floats(text, len(elements)), strict=True))
    status = values.get("STAT", 0.0)
    if math.isnan(status):
        status = 0.0
    if not float(status).is_integer() or status < 0:
        raise ReplyFormatError(f"status element {status} is not a status word in {text!r}")
    return Reading(
        voltage=values["VOLT"],
        current=values["CURR"],
        resistance=values.get("RES", math.nan),
        time=values.get("TIME", math.nan),
        status=int(status),
    )
