"""Reading a module's runs from Tiled: the IV points, the stored (or replayed) analysis, the
temperatures."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from teststand.app.report.model import (
    ModuleReport,
    StageResult,
    TemperatureTrace,
    UnknownModule,
    finite,
    judge,
    stage_order,
)
from teststand.callbacks.iv_analysis import STOP_REASONS, IVAnalysis, IVPoint
from teststand.errors import TeststandError
from teststand.storage.catalog import Catalog, module_slot


def _read(run: Any, keys: Iterable[str | None]) -> dict[str, list[Any]]:
    """The columns `keys` (those present) and `time` of the run's primary stream."""
    try:
        stream = run["primary"]
    except KeyError:
        return {}
    present = sorted({key for key in keys if key} & set(stream))
    if not present:
        return {}
    data = stream.read(variables=["time", *present])
    return {key: data[key].values.tolist() for key in ["time", *present]}


def iv_points(data: Mapping[str, Sequence[Any]], keys: Mapping[str, Any]) -> list[IVPoint]:
    """The slot's IV points: "measuring" and finite, until its first stop state."""
    states = data.get(str(keys.get("state")), [])
    bias, current = data.get(str(keys.get("bias")), []), data.get(str(keys.get("current")), [])
    temperatures = data.get(str(keys.get("temperature")))
    points: list[IVPoint] = []
    for row, state in enumerate(states):
        if state in STOP_REASONS:
            break
        v = finite(bias[row]) if row < len(bias) else None
        i = finite(current[row]) if row < len(current) else None
        if state == "measuring" and v is not None and i is not None:
            t = finite(temperatures[row]) if temperatures is not None else None
            points.append(IVPoint(abs(v), abs(i), t))
    return points


def reanalyse(run: Any, data: Mapping[str, Sequence[Any]]) -> dict[str, Any]:
    """The live analysis of a stored IV run: `IVAnalysis` fed its start, primary data and stop.

    `data` holds the run's primary-stream columns (at least every slot's IV keys) and `time`.
    Returns the run's summary (`{"verdict": ..., "analysis": {"slots": ...}}`), {} if none.
    """
    start, stop = dict(run.metadata.get("start", {})), dict(run.metadata.get("stop") or {})
    uid, times = str(start.get("uid", "")), list(data.get("time", []))
    descriptor = f"{uid}-primary"
    columns = {key: list(values) for key, values in data.items() if key != "time"}
    analysis = IVAnalysis()
    analysis("start", start)
    analysis("descriptor", {"uid": descriptor, "run_start": uid, "name": "primary", "time": 0.0})
    page = {
        "descriptor": descriptor,
        "uid": [f"{uid}-{n}" for n in range(len(times))],
        "seq_num": list(range(1, len(times) + 1)),
        "time": times,
        "data": columns,
        "timestamps": {key: times for key in columns},
        "filled": {},
    }
    analysis("event_page", page)
    analysis("stop", stop)
    return analysis.summaries.get(uid, {})


def _analysis(
    run: Any, slot: str, data: Mapping[str, Sequence[Any]]
) -> tuple[dict[str, Any], bool]:
    """The stored analysis of the slot, else the live analysis replayed (True: recomputed)."""
    stored = ((run.metadata.get("analysis") or {}).get("slots") or {}).get(slot)
    if isinstance(stored, Mapping):
        return dict(stored), False
    why = "the run's start document does not follow the run metadata schema"
    try:
        result = (reanalyse(run, data).get("analysis") or {}).get("slots", {}).get(slot)
    except TeststandError as exc:  # e.g. a temperature below absolute zero
        result, why = None, str(exc)
    if isinstance(result, Mapping):
        return dict(result), True
    return {"verdict": None, "reasons": [], "notes": [f"not analysed: {why}"]}, True


def collect(catalog: Catalog, module_id: str) -> ModuleReport:
    """Everything the report of `module_id` shows, read from Tiled."""
    runs = list(catalog.runs(module_id=module_id))
    if not runs:
        raise UnknownModule(
            f"no run in Tiled names module {module_id!r}: check the module id; "
            "`teststand report --all` reports every module that has runs"
        )
    chosen: dict[str, str] = {}  # stage -> uid of its newest completed IV run (runs: oldest first)
    for uid, run in runs:
        start, stop = run.metadata.get("start", {}), run.metadata.get("stop") or {}
        slot = module_slot(start, module_id)
        completed = start.get("test") == "iv" and stop.get("exit_status") == "success"
        if completed and slot is not None and slot in (start.get("iv_keys") or {}):
            chosen[str(start.get("stage"))] = uid
    stages: list[StageResult] = []
    temperatures: list[TemperatureTrace] = []
    for uid, run in runs:
        start = run.metadata.get("start", {})
        slot = module_slot(start, module_id)
        if slot is None:
            continue
        test, stage = str(start.get("test", "?")), str(start.get("stage", "?"))
        temperature = f"slot{slot}-temperature"
        keys: Mapping[str, Any] = {}
        wanted: list[str | None] = [temperature]
        if chosen.get(stage) == uid:
            keys = start["iv_keys"][slot]
            wanted += [key for slot_keys in start["iv_keys"].values() for key in slot_keys.values()]
        data = _read(run, wanted)
        if temperature in data:
            values = [(t, finite(v)) for t, v in zip(data["time"], data[temperature], strict=True)]
            found = [(t, v) for t, v in values if v is not None]
            trace = TemperatureTrace(
                uid, test, stage, tuple(t for t, _ in found), tuple(v for _, v in found)
            )
            temperatures.append(trace)
        if keys:
            points = iv_points(data, keys)
            result, recomputed = _analysis(run, slot, data)
            voltages = tuple(p.voltage for p in points)
            currents = tuple(p.current for p in points)
            time = float(start.get("time", 0.0))
            link = str(getattr(run, "uri", ""))
            stages.append(
                StageResult(
                    stage, uid, time, slot, result, recomputed, voltages, currents, start, link
                )
            )
    stages.sort(key=lambda s: (stage_order(s.stage), s.time))
    seen = {
        str(run.metadata["start"]["stage"]) for _, run in runs if run.metadata["start"].get("stage")
    }
    last = max(seen, key=stage_order) if seen else None
    return judge(module_id, len(runs), stages, temperatures, last)
