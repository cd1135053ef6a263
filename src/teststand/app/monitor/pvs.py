"""What the monitor watches: every signal PV of the stand, named by the IOC's own tree walk.

The device tree is built from the stand file without connecting anything (`TestStand`), and
`teststand.stand.pvnames.walk` gives each signal's PV suffix, as the IOC serves it. Each PV maps
to a measurement (its instrument, or `slot`), tags (stand, device, channel, slot, module id) and
a field named by its attribute and units (`voltage_V`, `leakage_current_A`).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field

from teststand.config import StandConfig
from teststand.stand import TestStand
from teststand.stand.pvnames import walk
from teststand.storage.monitoring import MonitoringConfig, PVPolicy

#: The state machine's PVs (`teststand ioc` with its watchdog): written as events.
STATE_PV = "STATE"
STATE_PVS = ("STATE", "STATE:REASON", "STATE:LOG")
#: Units spelled for a field name: one word of letters and digits, so `^ATTRIBUTE_[^_]+$`
#: finds an attribute's field whatever its units (the dashboards' queries).
UNIT_NAMES = {"°C": "degC", "%": "pct"}
_NUMBERED = re.compile(r"([A-Z_]+?)(\d+)$")


@dataclass(frozen=True)
class WatchedPV:
    """One PV and where its values go."""

    suffix: str
    measurement: str
    tags: dict[str, str]
    attribute: str  # the field's name without units
    text: bool  # a string PV (served as a char array)
    policy: PVPolicy
    slot: int | None = None
    units: str = field(default="", compare=False)

    def field_name(self, units: str) -> str:
        spelled = UNIT_NAMES.get(units) or re.sub(r"[^A-Za-z0-9]", "", units.replace("/", "per"))
        return f"{self.attribute}_{spelled}" if spelled else self.attribute


def field_pattern(attribute: str) -> str:
    """An InfluxQL regex matching the attribute's field, with or without units."""
    return f"/^{attribute}(_[A-Za-z0-9]+)?$/"


def policy_for(suffix: str, monitoring: MonitoringConfig | None) -> PVPolicy:
    """The first `pvs:` pattern matching the suffix, else the default."""
    if monitoring is None:
        return PVPolicy()
    for pattern, policy in monitoring.pvs.items():
        if fnmatch.fnmatchcase(suffix, pattern):
            return policy
    return monitoring.default


def watched_pvs(config: StandConfig) -> list[WatchedPV]:
    """Every signal PV of the stand (not verbs, not messages), sorted by suffix."""
    urls = {name: "tcp://127.0.0.1:1" for name in config.instruments}
    stand = TestStand(config.model_copy(update={"server": None}), urls)
    signals, _ = walk(stand)
    result: list[WatchedPV] = []
    for spec in signals:
        segments = spec.suffix.split(":")
        tags = {"stand": config.name, "device": spec.top}
        named: list[str] = []
        slot: int | None = None
        for segment in segments[:-1]:
            match = _NUMBERED.match(segment)
            if match and match.group(1) == "SLOT":
                slot = int(match.group(2))
                tags["slot"] = match.group(2)
                tags["device"] = "slot"
            elif match and match.group(1) == "CH":
                tags["channel"] = match.group(2)
            elif segment.lower() != spec.top:
                named.append(segment.lower())
        datatype = getattr(spec.signal, "datatype", None)
        result.append(
            WatchedPV(
                suffix=spec.suffix,
                measurement="slot" if slot is not None else spec.top,
                tags=tags,
                attribute="_".join([*named, spec.attribute]),
                text=datatype is str,
                policy=policy_for(spec.suffix, config.monitoring),
                slot=slot,
            )
        )
    return sorted(result, key=lambda pv: pv.suffix)
