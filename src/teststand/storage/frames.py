"""A run's stream as a table a physicist can read: dates, named columns in a stable order, units.

`labelled(dataset, metadata, descriptor)` gives the stream's `xarray.Dataset` with `units` and
`long_name` on every variable and the run in `attrs`; `frame(...)` the `pandas.DataFrame`: a
`DatetimeIndex` (local time zone), per slot the bias, leakage current and temperature (then its
other columns), the rest after, and in `attrs` the units, the data key of each column and the run.

A slot's bias is the data key `slotN` (the slot device's own reading); its column is `slotN-bias`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

SLOT_KEY = re.compile(r"(?:\w+-)?slot(\d+)(?:[-_](\w+))?")
#: A slot's columns first, in this order; its other columns follow by name.
SLOT_ORDER = ("bias", "leakage_current", "temperature", "lv_voltage", "lv_current", "state")
#: What a slot column holds, for `long_name`.
SLOT_MEANINGS = {
    "bias": "bias voltage",
    "leakage_current": "leakage current",
    "temperature": "module temperature",
    "lv_voltage": "LV voltage",
    "lv_current": "LV current",
    "state": "IV scan state",
}


def column_name(key: str) -> str:
    """The table's name of data key `key`: `slotN` (the slot's bias reading) is `slotN-bias`."""
    match = SLOT_KEY.fullmatch(key)
    return f"slot{match[1]}-bias" if match and match[2] is None and "-" not in key else key


def _sort_key(column: str) -> tuple[int, int, int, str]:
    match = SLOT_KEY.fullmatch(column)
    if match is None:
        return (0 if column.endswith("_voltage") else 2, 0, 0, column)
    what = match[2] or "bias"
    rank = SLOT_ORDER.index(what) if what in SLOT_ORDER else len(SLOT_ORDER)
    return (1, int(match[1]), rank, column)


def _long_name(column: str) -> str:
    match = SLOT_KEY.fullmatch(column)
    if match is None:
        return "IV step set point" if column == "iv_voltage" else column
    what = match[2] or "bias"
    return f"slot {match[1]} {SLOT_MEANINGS.get(what, what.replace('_', ' '))}"


def run_attrs(metadata: Mapping[str, Any], stream: str) -> dict[str, Any]:
    """The run as `attrs`: uid, stream, start and stop documents, verdict and analysis."""
    start = dict(metadata.get("start") or {})
    return {
        "uid": start.get("uid"),
        "stream": stream,
        "start": start,
        "stop": dict(metadata.get("stop") or {}),
        "verdict": metadata.get("verdict"),
        "analysis": metadata.get("analysis"),
    }


def labelled(
    dataset: Any, metadata: Mapping[str, Any], data_keys: Mapping[str, Any], stream: str
) -> Any:
    """`dataset` with `units`, `long_name` and `data_key` on each variable and the run in
    `attrs` (`run_attrs`)."""
    for key, variable in dataset.data_vars.items():
        units = (data_keys.get(key) or {}).get("units")
        variable.attrs.update(data_key=key, long_name=_long_name(column_name(str(key))))
        if units:
            variable.attrs["units"] = units
    if "time" in dataset.coords:
        dataset["time"].attrs.update(units="s", long_name="event time, s since 1970-01-01 UTC")
    dataset.attrs.update(run_attrs(metadata, stream))
    return dataset


def read_labelled(run: Any, stream: str = "primary") -> Any:
    """One stream of a `BlueskyRun` client, read and `labelled`."""
    data = run[stream]
    return labelled(data.read(), run.metadata, data.metadata.get("data_keys") or {}, stream)


def frame(dataset: Any) -> Any:
    """The `labelled` dataset as a `pandas.DataFrame` (see the module's docstring)."""
    import pandas as pd  # type: ignore[import-untyped]

    columns = {column_name(str(key)): str(key) for key in dataset.data_vars}
    order = sorted(columns, key=_sort_key)
    table = pd.DataFrame(
        {column: dataset[columns[column]].values for column in order},
        index=_dates(dataset["time"].values if "time" in dataset.coords else []),
    )
    table.attrs.update(dataset.attrs)
    table.attrs["units"] = {
        column: dataset[columns[column]].attrs["units"]
        for column in order
        if "units" in dataset[columns[column]].attrs
    }
    table.attrs["data_keys"] = {column: columns[column] for column in order}
    return table


def _dates(seconds: Any) -> Any:
    import pandas as pd

    zone = datetime.now().astimezone().tzinfo
    return pd.DatetimeIndex(pd.to_datetime(seconds, unit="s", utc=True), name="time").tz_convert(
        zone
    )
