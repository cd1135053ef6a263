"""The simulator kinds, by the name used in `sim://KIND` URLs and `teststand sim serve KIND`."""

from __future__ import annotations

from typing import Any

from teststand.sim.clock import SimClock
from teststand.sim.instrument import SimInstrument


class UnknownSimulator(ValueError):
    """A simulator kind that does not exist; the message lists the kinds that do."""


def kinds() -> dict[str, type[SimInstrument]]:
    from teststand.sim.caen import CaenDT8033, CaenN1470
    from teststand.sim.coldbox import ColdBox
    from teststand.sim.hmp4040 import HMP4040
    from teststand.sim.keithley import Keithley2410
    from teststand.sim.lauda import Lauda

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
