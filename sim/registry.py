"""The simulator kinds, by the name used in `sim://KIND` URLs and `teststand sim serve KIND`.

A simulator is a `SimInstrument` subclass with a `kind`; defining it registers it. `kinds()`
imports every module of this package first, so a new simulator module needs no entry here
(the instrument registry, `teststand.kinds`, names it beside its driver).
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from teststand.sim.clock import SimClock
from teststand.sim.instrument import SimInstrument


class UnknownSimulator(ValueError):
    """A simulator kind that does not exist; the message lists the kinds that do."""


def kinds() -> dict[str, type[SimInstrument]]:
    """Every simulator class with a `kind`, by kind (a later definition of a kind wins)."""
    package = __name__.rpartition(".")[0]
    for module in pkgutil.iter_modules(importlib.import_module(package).__path__):
        importlib.import_module(f"{package}.{module.name}")
    found: dict[str, type[SimInstrument]] = {}
    pending = list(SimInstrument.__subclasses__())
    while pending:
        cls = pending.pop(0)
        pending.extend(cls.__subclasses__())
        kind = vars(cls).get("kind")
        if isinstance(kind, str) and kind:
            found[kind] = cls
    return dict(sorted(found.items()))


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
