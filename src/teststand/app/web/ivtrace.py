"""The running IV scan's curve, live: each scanned slot's bias and leakage current as the IOC
posts them, from the moment the queue's running item (an IV-type plan) started.

The points are the readbacks (every update of `SLOTn:LEAKAGE_CURRENT` with the slot's last
`SLOTn:BIAS`), so the curve shows the ramps between steps too; the stored run (in Tiled) has
the scan's own points. Pushed as the hub's `iv` key.
"""

from __future__ import annotations

from typing import Any

from teststand.app.operator.items import QueueStatus
from teststand.app.web.hub import Hub
from teststand.errors import TeststandError
from teststand.plans.common import parse_slot_numbers

#: Plans whose running item gets a live IV curve.
IV_PLANS = frozenset({"iv_scan", "keithley_iv_scan", "module_qualification"})
MAX_POINTS = 2000


class IVTrace:
    def __init__(self, hub: Hub, slots: list[int]) -> None:
        self.hub = hub
        self.available = slots
        self.item = ""
        self.name = ""
        self.slots: list[int] = []
        self.points: dict[int, list[list[float]]] = {}
        self._bias: dict[int, float] = {}

    def on_queue(self, status: QueueStatus) -> None:
        running = status.running
        if running is None or running.uid == self.item or running.name not in IV_PLANS:
            return
        try:
            slots = parse_slot_numbers(running.kwargs.get("slots"), self.available)
        except TeststandError:
            slots = []
        self.item, self.name, self.slots = running.uid, running.name, slots
        self.points = {n: [] for n in slots}
        self._push()

    def on_value(self, suffix: str, value: Any) -> None:
        head, _, attribute = suffix.partition(":")
        if not head.startswith("SLOT") or not isinstance(value, float):
            return
        number = int(head[4:])
        if attribute == "BIAS":
            self._bias[number] = value
        elif attribute == "LEAKAGE_CURRENT" and number in self.points:
            bias = self._bias.get(number)
            if bias is None:
                return
            points = self.points[number]
            points.append([bias, value])
            del points[:-MAX_POINTS]
            self._push()

    def _push(self) -> None:
        self.hub.set(
            "iv",
            {
                "item": self.item,
                "name": self.name,
                "slots": {str(n): list(p) for n, p in self.points.items()},
            },
        )
