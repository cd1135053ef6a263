"""Grafana dashboards generated from the stand file: the stand overview and one per instrument.

The overview has a panel per slot (bias and leakage current of its module), the HV status, LV,
temperatures with the dew point, its margin, humidity, dry-air flow, the stand's state and the
events table; run, state and interlock events are its annotations. Each instrument's dashboard
has a panel per numeric attribute, one series per channel. Queries are InfluxQL against the
datasource `monitoring/grafana/datasource.yaml` provisions (uid `teststand-influxdb`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from teststand.app.monitor.pvs import WatchedPV, field_pattern, watched_pvs
from teststand.app.monitor.recorder import EVENTS
from teststand.config import StandConfig

DATASOURCE = {"type": "influxdb", "uid": "teststand-influxdb"}
#: Overview panels beyond the slots: title and the attributes (any measurement but `slot`).
OVERVIEW = {
    "Temperatures and dew point": (
        "temperature",
        "plate_temperature",
        "air_temperature",
        "dew_point",
        "bath_temperature",
        "water_temperature",
    ),
    "Dew-point margin": ("dew_point_margin",),
    "Humidity": ("relative_humidity", "humidity"),
    "Dry-air flow": ("flow", "dry_air_flow"),
}
SLOT_PANELS = {
    "Bias and leakage": ("bias", "leakage_current"),
    "LV": ("lv_voltage", "lv_current"),
}


def _query(measurement: str, attribute: str, where: str = "", group: str = "") -> str:
    condition = f"{where} AND $timeFilter" if where else "$timeFilter"
    groups = ", ".join(filter(None, ["time($__interval)", group]))
    return (
        f'SELECT mean({field_pattern(attribute)}) FROM "{measurement}" WHERE {condition} '
        f"GROUP BY {groups} fill(none)"
    )


def _panel(title: str, queries: Iterable[str], kind: str = "timeseries") -> dict[str, Any]:
    targets = [
        {
            "refId": chr(ord("A") + i),
            "query": q,
            "rawQuery": True,
            "resultFormat": "time_series",
            "datasource": DATASOURCE,
        }
        for i, q in enumerate(queries)
    ]
    return {"type": kind, "title": title, "datasource": DATASOURCE, "targets": targets}


def _layout(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for index, panel in enumerate(panels):
        panel["id"] = index + 1
        panel["gridPos"] = {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)}
    return panels


def _dashboard(uid: str, title: str, panels: list[dict[str, Any]], stand: str) -> dict[str, Any]:
    annotation = {
        "name": "Runs, states and interlocks",
        "datasource": DATASOURCE,
        "enable": True,
        "iconColor": "red",
        "query": f'SELECT "title", "text", "kind" FROM "{EVENTS}" WHERE "stand" = \'{stand}\' '
        "AND $timeFilter",
        "textColumn": "text",
        "tagsColumn": "kind",
    }
    return {
        "uid": uid,
        "title": title,
        "tags": ["teststand", stand],
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "10s",
        "schemaVersion": 39,
        "annotations": {"list": [annotation]},
        "panels": _layout(panels),
    }


def _attributes(pvs: list[WatchedPV], measurement: str) -> list[str]:
    seen = dict.fromkeys(p.attribute for p in pvs if p.measurement == measurement and not p.text)
    return list(seen)


def overview(config: StandConfig, pvs: list[WatchedPV]) -> dict[str, Any]:
    stand = config.name
    where_stand = f"\"stand\" = '{stand}'"
    panels: list[dict[str, Any]] = []
    for number, slot in sorted(config.slots.items()):
        module = slot.module.id if slot.module else "empty"
        where = f"{where_stand} AND \"slot\" = '{number}'"
        present = _attributes([p for p in pvs if p.slot == number], "slot")
        for title, attributes in SLOT_PANELS.items():
            queries = [_query("slot", a, where) for a in attributes if a in present]
            if queries:
                panels.append(_panel(f"Slot {number} ({module}): {title}", queries))
    hv = sorted({p.measurement for p in pvs if p.suffix.startswith("HV:") and not p.text})
    for measurement in hv:
        if "switched_on" in _attributes(pvs, measurement):
            queries = [_query(measurement, "switched_on", where_stand, '"channel"')]
            panels.append(_panel(f"{measurement}: HV on per channel", queries))
    instruments = sorted({p.measurement for p in pvs} - {"slot", "stand"})
    for title, wanted in OVERVIEW.items():
        queries = [
            _query(m, a, where_stand)
            for m in instruments
            for a in _attributes(pvs, m)
            if a in wanted
        ]
        if queries:
            panels.append(_panel(title, queries))
    panels.append(
        _panel(
            "Stand state",
            [f'SELECT last("state") FROM "stand" WHERE {where_stand} AND $timeFilter'],
            "stat",
        )
    )
    panels.append(
        _panel(
            "Events: runs, states, interlocks",
            [f'SELECT "title", "text", "kind" FROM "{EVENTS}" WHERE {where_stand} AND $timeFilter'],
            "table",
        )
    )
    return _dashboard(f"{stand}-overview"[:40], f"{stand}: stand overview", panels, stand)


def instrument(config: StandConfig, pvs: list[WatchedPV], name: str) -> dict[str, Any]:
    where = f"\"stand\" = '{config.name}'"
    panels = [
        _panel(f"{name}: {attribute}", [_query(name, attribute, where, '"channel"')])
        for attribute in _attributes(pvs, name)
    ]
    return _dashboard(f"{config.name}-{name}"[:40], f"{config.name}: {name}", panels, config.name)


def dashboards(config: StandConfig) -> dict[str, dict[str, Any]]:
    """File name → dashboard JSON."""
    pvs = watched_pvs(config)
    result = {"overview.json": overview(config, pvs)}
    for name in config.instruments:
        result[f"{name}.json"] = instrument(config, pvs, name)
    return result


def write_dashboards(config: StandConfig, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for file, dashboard in dashboards(config).items():
        path = folder / file
        path.write_text(json.dumps(dashboard, indent=1) + "\n")
        written.append(path)
    return written
