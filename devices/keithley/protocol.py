"""Keithley `:READ?` readings in the order set by `:FORM:ELEM`."""

from __future__ import annotations

import math
import re
from collections.abc import Collection
from dataclasses import dataclass

from teststand.devices.scpi import parse_floats
from teststand.errors import ReplyFormatError

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


def parse_reading(
    text: str, elements: Collection[str] = ELEMENTS, form: re.Pattern[str] | None = None
) -> Reading:
    """Parse a `:READ?` reply of the elements enabled with `:FORM:ELEM` (VOLT and CURR needed).

    A 2400-series unit sends the enabled elements in its fixed order VOLT, CURR, RES, TIME, STAT
    whatever order `:FORM:ELEM` named them in, so the reply is read in that order.
    """
    unknown = set(elements) - set(ELEMENTS)
    if unknown or not {"VOLT", "CURR"} <= set(elements):
        raise ValueError(f"elements must include VOLT and CURR from {ELEMENTS}, got {elements}")
    order = [element for element in ELEMENTS if element in elements]
    values = dict(zip(order, parse_floats(text, len(order), form), strict=True))
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
