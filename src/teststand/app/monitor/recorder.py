"""From PV updates to points: the deadband and maximum period of each PV, units, module ids.

`update(index, value, time_ns)` is called for every CA monitor update; a point is made when the
value moved by more than the PV's deadband since the last written one (any change for text), and
`heartbeat(now_ns)` writes again each PV unwritten for its `max_period`. The state machine's
`STATE:LOG` (one line per transition) becomes an event point for Grafana's annotations.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from teststand.app.monitor.lineprotocol import FieldValue, line
from teststand.app.monitor.pvs import WatchedPV

#: Measurement of events (state transitions, interlock actions, runs): Grafana annotations.
EVENTS = "events"
#: States the watchdog goes to when it acts: their transitions are interlock events.
INTERLOCK_STATES = ("SAFE", "ERROR")


@dataclass
class _Last:
    value: FieldValue | None = None
    written_ns: int = 0


class Recorder:
    """Turns updates into line-protocol lines handed to `emit`."""

    def __init__(self, stand: str, pvs: list[WatchedPV], emit: Callable[[str], None]) -> None:
        self.stand = stand
        self.pvs = pvs
        self.emit = emit
        self.units: dict[int, str] = {}
        self._last = [_Last() for _ in pvs]
        self._latest: list[tuple[FieldValue, int] | None] = [None] * len(pvs)
        self._held: dict[int, list[tuple[FieldValue, int]]] = {}
        self.module_ids: dict[int, str] = {}
        self.state = ""
        self.points = 0

    def set_units(self, index: int, units: str) -> None:
        """Units of a PV (from its CTRL metadata); points held for them are written now."""
        self.units[index] = units
        self._release(index)

    def _ready(self, index: int) -> bool:
        """Units known, and for a slot's PV its module id (every point carries it)."""
        slot = self.pvs[index].slot
        return index in self.units and (slot is None or slot in self.module_ids)

    def _release(self, index: int) -> None:
        if self._ready(index):
            for value, time_ns in self._held.pop(index, []):
                self.update(index, value, time_ns)

    def update(self, index: int, value: FieldValue, time_ns: int) -> None:
        pv = self.pvs[index]
        if pv.attribute == "module_id" and pv.slot is not None:
            known = pv.slot in self.module_ids
            self.module_ids[pv.slot] = str(value)
            if not known:
                for other in [i for i in self._held if self.pvs[i].slot == pv.slot]:
                    self._release(other)
        if pv.suffix == "STATE":
            self.state = str(value)
        self._latest[index] = (value, time_ns)
        if not self._ready(index):
            self._held.setdefault(index, []).append((value, time_ns))
            return
        last = self._last[index]
        if last.value is not None and not self._moved(pv, last.value, value):
            return
        self._write(index, value, time_ns)
        if pv.suffix == "STATE:LOG" and value:
            self._event(str(value), time_ns)

    def heartbeat(self, now_ns: int) -> None:
        """Write again every PV unwritten for longer than its maximum period."""
        for index, pv in enumerate(self.pvs):
            latest, last = self._latest[index], self._last[index]
            if latest is None or not self._ready(index):
                continue
            if now_ns - last.written_ns >= pv.policy.max_period * 1e9:
                self._write(index, latest[0], max(now_ns, last.written_ns + 1))

    def _moved(self, pv: WatchedPV, old: FieldValue, new: FieldValue) -> bool:
        if isinstance(old, float | int) and isinstance(new, float | int):
            change = abs(float(new) - float(old))
            return change > pv.policy.deadband if pv.policy.deadband > 0 else change > 0
        return old != new

    def _write(self, index: int, value: FieldValue, time_ns: int) -> None:
        pv = self.pvs[index]
        tags = dict(pv.tags)
        if pv.slot is not None:
            tags["module_id"] = self.module_ids.get(pv.slot, "")
        name = pv.field_name(self.units.get(index, ""))
        self.emit(line(pv.measurement, tags, {name: value}, time_ns))
        self._last[index] = _Last(value, time_ns)
        self.points += 1

    def _event(self, text: str, time_ns: int) -> None:
        """`STATE:LOG` reads `<time> OLD -> NEW by WHO: WHY`."""
        match = re.search(r"(\w+) -> (\w+)", text)
        new = match.group(2) if match else self.state
        kind = "interlock" if new in INTERLOCK_STATES else "state"
        tags = {"stand": self.stand, "kind": kind}
        self.emit(line(EVENTS, tags, {"title": f"state {new}", "text": text}, time_ns))
        self.points += 1
