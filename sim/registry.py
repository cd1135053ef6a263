"""The simulator kinds, by the name used in `sim://KIND` URLs and `teststand sim serve KIND`."""

from __future__ import annotations

from typing import Any

from .clock import SimClock
from .instrument import SimInstrument


class UnknownSimulator(ValueError):
    """A simulator kind that does not exist; the message lists the kinds that do."""


def kinds() -> dict[str, type[SimInstrument]]:
    from .caen import CaenDT8033, CaenN1470
    from .coldbox import ColdBox
    from .hmp4040 import HMP4040
    from .keithley import Keithley2410
    from .lauda import Lauda

    classes: list[type[SimInstrument]] = [
        CaenDT8033,
        CaenN1470,
        Lauda,
        Keithley2410,
        HMP4040,
        ColdBox,
    ]
    return {cls.kind: cls for cls in classes}


def create(kind: str, clock: SimClock, **options: Any) -> SimInstrument:
    known = kinds()
    if kind not in known:
        raise UnknownSimulator(f"unknown simulator kind {kind!r}; known kinds: {', '.join(known)}")
    try:
        return known[kind](clock, **options)
    except TypeError as exc:
        allowed = ", ".join(known[kind].options_help) or "none"
        raise UnknownSimulator(
            f"bad option for simulator {kind!r}: {exc}; options: {allowed}"
        ) from None
