"""IV runs in the ITk formats: module-qc-data-tools measurement files and production-database
payloads (`teststand export itk MODULE`).

For each completed IV run of the module (in a stage of the ITk flow) it writes
`<out>/<module>/<stage>_<run>.json`, the run as the ITk IV_MEASURE measurement (the qcDataFrame
JSON that module-qc-tools writes, validated against module-qc-data-tools' schema), and
`<out>/<module>/payloads/<stage>_<run>.json`, the test run it would send to the production
database (`uploadTestRunResults`) with the official analysis's results. `--upload` sends the
payloads with itkdb, signed in with the user's access codes from the environment.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from teststand.callbacks.itk_official import TEST_TYPE, check_points, official_iv
from teststand.callbacks.iv_analysis import STOP_REASONS
from teststand.callbacks.iv_rules import IVPoint
from teststand.errors import TeststandError
from teststand.itk import ITK_STAGES, ITkConfig, keep_logging, module_layer
from teststand.storage.catalog import Catalog

#: itkdb's own variables for the user's production-database access codes.
TOKEN_VARIABLES = ("ITKDB_ACCESS_CODE1", "ITKDB_ACCESS_CODE2")


class ExportError(TeststandError, ValueError):
    """An export that cannot be made as asked (bad module, stage, run or missing token)."""


@dataclass(frozen=True)
class IVRun:
    """One module's IV in one stored run: its points (scan order), times and conditions."""

    uid: str
    stage: str
    slot: str
    module_id: str
    layer: str
    time_start: float
    time_end: float
    times: tuple[float, ...]
    points: tuple[IVPoint, ...]
    humidity: float | None  # % RH, mean of the run's baseline readings
    versions: Mapping[str, str]
    stored: Mapping[str, Any]  # the run's stored per-slot analysis, {} if none

    @property
    def name(self) -> str:
        return f"{self.stage}_{self.uid[:8]}"

    @property
    def label(self) -> str:
        return f"IV run {self.uid} ({self.stage}, slot {self.slot})"


def check_stage(stage: str | None) -> None:
    if stage is not None and stage not in ITK_STAGES:
        raise ExportError(
            f"stage {stage!r} is not a stage of the ITk module flow: choose one of "
            f"{', '.join(ITK_STAGES)}"
        )


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _humidity(run: Any) -> float | None:
    try:
        baseline = run["baseline"]
    except KeyError:
        return None
    keys = [key for key in baseline if key.endswith("relative_humidity")]
    if not keys:
        return None
    values = [_finite(v) for v in baseline.read(variables=keys)[keys[0]].values.tolist()]
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def _iv_run(uid: str, run: Any, module_id: str) -> IVRun | None:
    start, stop = run.metadata.get("start", {}), run.metadata.get("stop") or {}
    slot = next(
        (s for s, info in (start.get("slots") or {}).items() if info.get("module_id") == module_id),
        None,
    )
    keys = (start.get("iv_keys") or {}).get(slot)
    if start.get("test") != "iv" or stop.get("exit_status") != "success" or not keys:
        return None
    wanted = sorted({k for k in (keys["bias"], keys["current"], keys.get("temperature")) if k})
    data = run["primary"].read(variables=["time", keys["state"], *wanted])
    column = {key: data[key].values.tolist() for key in ["time", keys["state"], *wanted]}
    times, points = [], []
    for row, state in enumerate(column[keys["state"]]):
        if state in STOP_REASONS:
            break
        v, i = _finite(column[keys["bias"]][row]), _finite(column[keys["current"]][row])
        if state == "measuring" and v is not None and i is not None:
            t = _finite(column[keys["temperature"]][row]) if keys.get("temperature") else None
            times.append(float(column["time"][row]))
            points.append(IVPoint(abs(v), abs(i), t))
    info = start["slots"][slot]
    stored = ((run.metadata.get("analysis") or {}).get("slots") or {}).get(slot) or {}
    return IVRun(
        uid=uid,
        stage=str(start.get("stage")),
        slot=str(slot),
        module_id=module_id,
        layer=info.get("layer") or module_layer(module_id),
        time_start=float(start.get("time", 0.0)),
        time_end=float(stop.get("time", start.get("time", 0.0))),
        times=tuple(times),
        points=tuple(points),
        humidity=_humidity(run),
        versions=dict(start.get("versions") or {}),
        stored=stored,
    )


def iv_runs(catalog: Catalog, module_id: str, stage: str | None = None) -> Iterator[IVRun]:
    """The module's completed IV runs in stages of the ITk flow (or in `stage`), oldest first."""
    module_layer(module_id)  # an invalid serial number fails here (ValueError)
    check_stage(stage)
    for uid, run in catalog.runs(module_id=module_id, test="iv", stage=stage):
        found = _iv_run(uid, run, module_id)
        if found is not None and found.stage in ITK_STAGES:
            yield found


def _column(values: Sequence[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None]


def measurement(run: IVRun, institution: str) -> list[list[dict[str, Any]]]:
    """The run as module-qc-tools writes an IV_MEASURE: one module, one qcDataFrame."""
    with keep_logging():
        from module_qc_data_tools.qcDataFrame import outputDataFrame, qcDataFrame

    columns = ["time", "voltage", "current", "sigma current", "temperature", "humidity"]
    frame = qcDataFrame(columns=columns, units=["s", "V", "A", "A", "C", "%"])
    frame.set_x("voltage", True)
    temperatures = _column([p.temperature for p in run.points])
    frame.add_data(
        {
            "time": [t - run.time_start for t in run.times],
            "voltage": [p.voltage for p in run.points],
            "current": [p.current for p in run.points],
            "sigma current": [0.0] * len(run.points),
            "temperature": temperatures,
            "humidity": [] if run.humidity is None else [run.humidity] * len(run.points),
        }
    )
    for key, value in {
        "ModuleSN": run.module_id,
        "Institution": institution,
        "TimeStart": int(run.time_start),
        "TimeEnd": int(run.time_end),
        "Stage": run.stage,
        "AverageTemperature": sum(temperatures) / len(temperatures) if temperatures else None,
        "SoftwareType": "teststand",
        "SoftwareVersion": json.dumps(dict(run.versions), sort_keys=True),
        "RunUID": run.uid,
    }.items():
        if value is not None:
            frame.add_meta_data(key, value)
    frame.add_property(f"{TEST_TYPE}_MEASUREMENT_VERSION", run.versions.get("teststand", ""))
    output = outputDataFrame()
    output._serialNumber = run.module_id  # the package's own writer sets it this way
    output._runNumber = run.uid.replace("-", "")[:24]  # a valid ObjectId, stable per run
    output.set_test_type(TEST_TYPE)
    output.set_results(frame)
    return [[json.loads(json.dumps(output.to_dict(), default=float))]]


def validate_measurement(document: Any, where: str) -> None:
    """Check `document` against module-qc-data-tools' measurement schema; ExportError if not."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    with keep_logging():
        from module_qc_data_tools.utils import datapath
    schema = json.loads((datapath / "schema_measurement.json").read_text(encoding="utf-8"))
    error = best_match(Draft202012Validator(schema).iter_errors(document))
    if error is not None:
        path = ".".join(str(p) for p in error.absolute_path) or "<root>"
        raise ExportError(
            f"{where} does not follow the ITk measurement schema at {path}: {error.message}"
        )


def _tool_number(value: float | None, scale: float = 1.0) -> float:
    return -999 if value is None else value * scale


def payload(run: IVRun, institution: str, rules: ITkConfig) -> dict[str, Any]:
    """The production-database test run (`uploadTestRunResults`) of the official analysis."""
    check_points(run.points, run.layer, run.label)
    official = official_iv(run.points, run.layer, rules, serial_number=run.module_id, run=run.label)
    started = datetime.fromtimestamp(run.time_start, UTC).isoformat(timespec="milliseconds")
    temperatures = _column([p.temperature for p in run.points])
    return {
        "component": run.module_id,
        "testType": TEST_TYPE,
        "institution": institution,
        "runNumber": run.uid.replace("-", "")[:24],
        "date": started.replace("+00:00", "Z"),
        "stage": f"MODULE/{run.stage}",
        "passed": official["verdict"] == "pass",
        "problems": bool(run.stored.get("disagreement")),
        "properties": {
            "ANALYSIS_VERSION": official["tool"].rsplit(" ", 1)[-1],
            "MEASUREMENT_VERSION": run.versions.get("teststand", ""),
            "MEASUREMENT_DATE": started,
            "MEASUREMENT_DURATION": int(run.time_end - run.time_start),
            "TEMP": round(sum(temperatures) / len(temperatures), 2) if temperatures else -999,
            "HUM": -999 if run.humidity is None else round(run.humidity, 2),
        },
        "results": {
            "IV_ARRAY": {
                "time": [round(t - run.time_start, 3) for t in run.times],
                "voltage": [p.voltage for p in run.points],
                "current": [p.current * 1e6 for p in run.points],  # µA, as the tool stores it
                "sigma current": [0.0] * len(run.points),
                "temperature": temperatures,
                "humidity": [] if run.humidity is None else [run.humidity] * len(run.points),
            },
            "BREAKDOWN_VOLTAGE": _tool_number(official["breakdown_voltage"]),
            "NO_BREAKDOWN_VOLTAGE_OBSERVED": official["no_breakdown_observed"],
            "MAXIMUM_VOLTAGE": official["max_voltage"],
            "LEAK_CURRENT": _tool_number(official["leakage_current"], 1e6),
            "LEAK_PER_AREA": _tool_number(official["leakage_current_density"], 1e6),
            "BREAKDOWN_REDUCTION": -999,  # needs the bare module's IV from the database
            "LEAK_INCREASE_FACTOR": -999,
        },
    }


def validate_payload(document: Mapping[str, Any], where: str) -> None:
    """The checks that need no database: serial number (itksn), test type, stage, IV array."""
    try:
        module_layer(str(document.get("component")))
    except ValueError as exc:
        raise ExportError(f"{where}: {exc}") from None
    stage = str(document.get("stage", "")).removeprefix("MODULE/")
    if document.get("testType") != TEST_TYPE or stage not in ITK_STAGES:
        raise ExportError(f"{where}: test type {document.get('testType')} at stage {stage}")
    iv = document["results"]["IV_ARRAY"]
    if not len(iv["voltage"]) == len(iv["current"]) == len(iv["time"]) >= 2:
        raise ExportError(f"{where}: the IV array's columns differ in length")
    if not document.get("institution"):
        raise ExportError(f"{where}: no institution code")


def access_codes() -> tuple[str, str]:
    """The user's access codes from the environment; ExportError naming the variables if not."""
    codes = [os.environ.get(name, "") for name in TOKEN_VARIABLES]
    if not all(codes):
        missing = [name for name, code in zip(TOKEN_VARIABLES, codes, strict=True) if not code]
        raise ExportError(
            f"--upload signs in to the ITk production database with your access codes, but "
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set: export "
            "them (itkdb's variables) and run again; nothing was written or sent"
        )
    return codes[0], codes[1]


def upload(payloads: Sequence[Mapping[str, Any]], codes: tuple[str, str]) -> list[Any]:
    """Send the payloads with itkdb (needs the real database; not exercised by the tests)."""
    import itkdb

    user = itkdb.core.User(access_code1=codes[0], access_code2=codes[1])
    client = itkdb.Client(user=user)  # type: ignore[no-untyped-call]
    sent = []
    for document in payloads:
        try:
            sent.append(client.post("uploadTestRunResults", json=dict(document)))  # type: ignore[no-untyped-call]
        except Exception as exc:
            raise ExportError(
                f"the production database refused the IV_MEASURE of {document['component']} "
                f"(run {document['runNumber']}): {exc}; the payloads stay on disk"
            ) from exc
    return sent
