"""Reading devices for people: one group per instrument and per slot, every value with its
unit, numbers in readable formats. Used by `teststand stand check` and by the shell's `wa()`,
`read(device)` and `where()`."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from teststand.errors import TeststandError, TransportError

#: Units shown in a friendlier scale: (unit, factor, shown unit) by magnitude.
_SCALED = {"A": ((1e-3, 1e6, "µA"), (1.0, 1e3, "mA")), "degC": ((math.inf, 1.0, "°C"),)}


@dataclass(frozen=True)
class Reading:
    key: str
    value: str
    units: str


@dataclass
class Group:
    """The readings of one device, or why it could not be read."""

    name: str
    readings: list[Reading] = field(default_factory=list)
    #: Why it did not answer (a link error, a timeout): the device counts as not answering.
    problem: str = ""
    #: Why its readings are missing although it answered (e.g. an SMU with its output off).
    note: str = ""

    @property
    def answered(self) -> bool:
        return not self.problem


def format_value(value: Any, units: str = "") -> tuple[str, str]:
    """(text, unit) of a reading: currents in µA or mA, °C, floats to 4 significant digits."""
    if isinstance(value, Enum):
        return str(value.value), units
    if isinstance(value, bool) or not isinstance(value, float | int):
        return str(value), units
    number = float(value)
    for top, factor, shown in _SCALED.get(units, ()):
        if abs(number) < top:
            return f"{number * factor:.4g}", shown
    if number and (abs(number) >= 1e5 or abs(number) < 1e-3):
        return f"{number:.3e}", units
    return f"{number:.4g}" if isinstance(value, float) else str(value), units


def _labels(device: Any) -> dict[str, str]:
    """Data key -> the signal's attribute path in the device (`bias`, `channels.0.vmon`)."""
    found: dict[str, str] = {}

    def walk(parent: Any, path: str) -> None:
        for attribute, child in parent.children():
            where = f"{path}.{attribute}" if path else attribute
            found.setdefault(child.name, where)
            walk(child, where)

    walk(device, "")
    return found


async def read_group(device: Any, *, configuration: bool = True) -> Group:
    """A device's readings (and configuration), each with its unit; a typed error becomes the
    group's problem instead of stopping the others."""
    group = Group(device.name)
    description: dict[str, Any] = {}
    readings: dict[str, Any] = {}
    try:
        if configuration:
            description |= await device.describe_configuration()
            readings |= await device.read_configuration()
        try:
            description |= await device.describe()
            readings |= await device.read()
        except TeststandError as exc:
            if isinstance(exc, TransportError):
                raise
            group.note = f"{type(exc).__name__}: {exc}"
    except (TransportError, TimeoutError) as exc:
        group.problem = f"{type(exc).__name__}: {exc}"
        return group
    labels = _labels(device)
    for key, reading in readings.items():
        value, units = format_value(reading["value"], str(description[key].get("units") or ""))
        label = labels.get(key) or key.removeprefix(f"{device.name}-")
        group.readings.append(Reading(label, value, units))
    return group


async def read_groups(devices: Iterable[Any], *, configuration: bool = True) -> list[Group]:
    return [await read_group(device, configuration=configuration) for device in devices]


def group_lines(groups: Sequence[Group]) -> list[str]:
    """One block per group: its name, then `key  value unit` rows aligned."""
    lines: list[str] = []
    width = max((len(r.key) for g in groups for r in g.readings), default=0)
    for group in groups:
        if group.problem:
            lines.append(f"{group.name}: NOT READ ({group.problem})")
            continue
        lines.append(
            f"{group.name}:" + (f" (readings not taken: {group.note})" if group.note else "")
        )
        lines += [f"  {r.key:<{width}}  {r.value:>12} {r.units}".rstrip() for r in group.readings]
    return lines


def summary(groups: Sequence[Group]) -> str:
    """One line: every device answered, or which did not."""
    failed = [g.name for g in groups if not g.answered]
    values = sum(len(g.readings) for g in groups)
    if not failed:
        return f"OK: all {len(groups)} devices answered ({values} readings)"
    return f"FAILED: {len(failed)} of {len(groups)} devices did not answer: {', '.join(failed)}"
