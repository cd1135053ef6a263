"""Live IV analysis: breakdown, leakage at the operating voltage and a verdict per module.

`IVAnalysis` is a bluesky callback (`RE.subscribe(IVAnalysis(publish=...))`) for the runs whose
start document says `test: "iv"` (the contract of `teststand.callbacks.schema`). When a run
stops it analyses every slot with the numbers of QUALIFICATION.md (`criteria_for`, which a stand
may override) and hands the summary to `publish(run_uid, metadata)`; the storage writer stores it
as top-level metadata of the run's container in Tiled:

    {"verdict": "pass" | "fail",
     "analysis": {"slots": {"3": SlotResult.to_json(), ...},
                  "passed": [module ids], "failed": [module ids]}}

Search it with `tiled.queries`: `client.search(Key("verdict") == "fail")`,
`Contains("analysis.failed", "20UPGM22110003")`, `Key("analysis.slots.3.breakdown_voltage") < 150`.

Conventions: voltages and currents are magnitudes; breakdown ratios use the measured currents of
points at or above V_depl, the leakage at the operating voltage is normalised to 20 °C; a current
compliance (or the plan's breakdown stop) counts as a breakdown at its voltage; a point within
`Criteria.voltage_tolerance` of a voltage reaches it; a breakdown at the threshold passes.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from event_model import DocumentRouter, EventDescriptor, EventPage, RunStart, RunStop

from teststand.callbacks.itk_compare import combine
from teststand.callbacks.itk_official import not_analysed, official_iv, preload
from teststand.callbacks.iv_rules import (
    DEFAULT_CRITERIA,
    AnalysisError,
    Criteria,
    IVPoint,
    Rule,
    bracket,
    criteria_for,
    find_breakdown,
    normalise_to_20c,
)
from teststand.callbacks.schema import IV_STATES, IVSettings, RunMetadata, SlotInfo, read_metadata
from teststand.config import SensorType
from teststand.itk import ITkConfig

log = logging.getLogger(__name__)

STOP_REASONS = IV_STATES[2:]  # the states that end a slot's scan (not measuring, unsettled)
#: A last point at this fraction of iv.compliance is a compliance stop (as the plans decide it).
COMPLIANCE_FRACTION = 0.95
Publish = Callable[[str, dict[str, Any]], object]
Listener = Callable[[str, dict[int, "SlotResult"]], object]


@dataclass
class SlotResult:
    """One slot's IV result: the per-slot fields of the run contract, plus `notes`."""

    module_id: str
    sensor: str
    operating_voltage: float
    leakage_current: float | None
    leakage_current_density: float | None
    temperature: float | None
    breakdown_voltage: float | None
    breakdown_threshold: float
    max_voltage: float | None
    stop_reason: str
    compliance_voltage: float | None
    verdict: Literal["pass", "fail"]
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    leakage_limit: float | None = None  # A/cm² at the operating voltage

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_ENDINGS = {
    "compliance": "current compliance",
    "breakdown": "breakdown stop",
    "done": "end of scan",
}


def _v(volts: float) -> str:
    return f"{round(volts, 2):g} V"


def analyse_slot(
    points: Sequence[IVPoint],
    info: SlotInfo,
    settings: IVSettings | None,
    criteria: Criteria,
    stop_reason: str,
    *,
    rule: Rule = "itk",
    problems: Sequence[str] = (),
) -> SlotResult:
    """Judge one slot's valid IV points (in scan order); `problems` are failures found elsewhere."""
    kind = "planar" if info.sensor is SensorType.PLANAR else "3D"
    op, threshold = criteria.operating_voltage, criteria.breakdown_threshold
    valid = [
        IVPoint(abs(p.voltage), abs(p.current), p.temperature)
        for p in points
        if math.isfinite(p.voltage) and math.isfinite(p.current)
    ]
    pts = sorted(valid, key=lambda p: p.voltage)
    xs = [p.voltage for p in pts]
    reasons, notes = list(problems), list[str]()
    last = valid[-1].voltage if valid else None
    compliance = last if stop_reason == "compliance" else None
    breakdown = find_breakdown(xs, [p.current for p in pts], criteria, rule)
    how = ""
    if breakdown is None and last is not None and stop_reason in ("compliance", "breakdown"):
        breakdown = last
        limit = f" of {settings.compliance * 1e6:g} µA" if settings else ""
        how = f" (current compliance{limit})" if compliance else " (the scan's breakdown stop)"
    leakage: float | None = None
    density: float | None = None
    temperature: float | None = None
    if last is None:
        reasons.append(f"no valid IV points were measured (the scan stopped: {stop_reason})")
    elif stop_reason == "error" and not problems:  # problems explain an interrupted run
        reasons.append(f"the scan stopped on an error at {_v(last)}: repeat the measurement")
    if breakdown is not None and breakdown < threshold:
        reasons.append(
            f"breakdown at {_v(breakdown)}{how} is below the {_v(threshold)} required"
            f" for {kind} sensors"
        )
    elif breakdown is None and pts and xs[-1] < threshold:
        notes.append(f"no breakdown up to {_v(xs[-1])}, but the scan ended below {_v(threshold)}")
    found = bracket(xs, op, criteria.voltage_tolerance)
    if pts and found is None:
        why = _ENDINGS.get(stop_reason, stop_reason)
        why = "run interrupted" if problems and stop_reason == "error" else why
        reasons.append(
            f"the scan never reached the {_v(op)} operating voltage:"
            f" it stopped at {_v(xs[-1])} ({why})"
        )
    elif found is not None:
        i0, i1, w = found
        near = (pts[i0], pts[i1])
        norm = [
            normalise_to_20c(p.current, 20.0 if p.temperature is None else p.temperature)
            for p in near
        ]
        leakage = (1 - w) * norm[0] + w * norm[1]
        density = leakage / info.area_cm2
        temps = [p.temperature for p in near]
        if temps[0] is None or temps[1] is None:
            notes.append(f"no module temperature at {_v(op)}: assumed 20 °C, not normalised")
        else:
            temperature = (1 - w) * temps[0] + w * temps[1]
        if density > criteria.leakage_limit:
            reasons.append(
                f"leakage current {density * 1e6:.2f} µA/cm² at {_v(op)} (20 °C) is above the"
                f" {criteria.leakage_limit * 1e6:g} µA/cm² limit for {kind} sensors"
            )
    return SlotResult(
        module_id=info.module_id,
        sensor=info.sensor.value,
        operating_voltage=op,
        leakage_current=leakage,
        leakage_current_density=density,
        temperature=temperature,
        breakdown_voltage=breakdown,
        breakdown_threshold=threshold,
        max_voltage=xs[-1] if xs else None,
        stop_reason=stop_reason,
        compliance_voltage=compliance,
        verdict="fail" if reasons else "pass",
        reasons=reasons,
        notes=notes,
        leakage_limit=criteria.leakage_limit,
    )


def summarise(slots: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The run's metadata from its slots' combined results (`itk_compare.combine`): the adopted
    verdict (a run without modules fails), the live one, and the modules whose verdicts differ."""

    def modules(key: str, passing: bool) -> list[str]:
        return [str(r["module_id"]) for r in slots.values() if (r[key] == "pass") == passing]

    return {
        "verdict": "pass" if slots and not modules("verdict", False) else "fail",
        "analysis": {
            "slots": {slot: dict(result) for slot, result in slots.items()},
            "passed": modules("verdict", True),
            "failed": modules("verdict", False),
            "live_verdict": "pass" if slots and not modules("live_verdict", False) else "fail",
            "disagree": [str(r["module_id"]) for r in slots.values() if r["disagreement"]],
        },
    }


@dataclass
class _Run:
    md: RunMetadata
    points: dict[str, list[IVPoint]] = field(default_factory=dict)
    stops: dict[str, str] = field(default_factory=dict)


class IVAnalysis(DocumentRouter):
    """Analyses IV runs as they stop; `results` (latest run) and `summaries` (by run uid, the
    last `SUMMARIES_KEPT` runs: a session's analysis lives for weeks in the queue worker, and
    each run's summary is published with the run, so older ones are read from Tiled)."""

    #: A summary holds both analyses and their comparison (about 5 kB): keeping 100 made the
    #: queue worker's heap grow for its first hour of the soak (tracemalloc's largest growth).
    SUMMARIES_KEPT = 10

    def __init__(
        self,
        *,
        criteria: Mapping[SensorType, Criteria] | None = None,
        rule: Rule = "itk",
        publish: Publish | None = None,
        on_result: Iterable[Listener] = (),
        itk: ITkConfig | None = None,
    ) -> None:
        super().__init__()
        preload()  # the official analysis runs in `stop`: its import must not delay the results
        self.itk = itk or ITkConfig()
        if rule not in ("itk", "robust"):
            raise AnalysisError(f"unknown breakdown rule {rule!r}: use 'itk' or 'robust'")
        self.criteria = {**DEFAULT_CRITERIA, **(criteria or {})}
        if wrong := [s.value for s, c in self.criteria.items() if c.sensor is not s]:
            raise AnalysisError(f"criteria given for {wrong} are for another sensor type")
        self.rule: Rule = rule
        self.publish = publish
        self.on_result = list(on_result)
        self.results: dict[int, SlotResult] = {}
        self.summaries: dict[str, dict[str, Any]] = {}
        self._runs: dict[str, _Run] = {}
        self._primary: dict[str, str] = {}  # descriptor uid -> run uid

    def start(self, doc: RunStart) -> None:
        md = read_metadata(dict(doc))
        if md is None or md.test != "iv":
            return
        if not all(slot.isdigit() for slot in md.slots):
            log.warning(
                "IV run %s: slot keys %s are not numbers; not analysed", doc["uid"], list(md.slots)
            )
            return
        self._runs[doc["uid"]] = _Run(md, {slot: [] for slot in md.slots})

    def descriptor(self, doc: EventDescriptor) -> None:
        if doc.get("name") == "primary" and doc["run_start"] in self._runs:
            self._primary[doc["uid"]] = doc["run_start"]

    def event_page(self, doc: EventPage) -> EventPage:
        run = self._runs.get(self._primary.get(doc["descriptor"], ""))
        if run is None:
            return doc
        data: Mapping[str, list[Any]] = doc["data"]
        for row in range(len(doc["seq_num"])):
            for slot, keys in run.md.iv_keys.items():
                if slot in run.stops or keys.state not in data:
                    continue
                state = data[keys.state][row]
                if state in STOP_REASONS:
                    run.stops[slot] = state
                    continue
                bias, current = _cell(data, keys.bias, row), _cell(data, keys.current, row)
                if state == "measuring" and bias is not None and current is not None:
                    temp = _cell(data, keys.temperature, row)
                    run.points[slot].append(IVPoint(abs(bias), abs(current), temp))
        return doc

    def stop(self, doc: RunStop) -> None:
        uid = doc["run_start"]
        run = self._runs.pop(uid, None)
        if run is None:
            return
        self._primary = {d: r for d, r in self._primary.items() if r != uid}
        status, why = doc.get("exit_status", "success"), doc.get("reason", "")
        problems = []
        if status != "success":
            problems.append(
                f"the run did not complete (exit status '{status}'{': ' + why if why else ''});"
                " only the points measured before it ended were analysed"
            )
        results: dict[str, SlotResult] = {}
        combined: dict[str, dict[str, Any]] = {}
        for slot, info in run.md.slots.items():
            no_keys = f"the run has no IV data keys for slot {slot}"
            missing = [] if slot in run.md.iv_keys else [no_keys]
            result = analyse_slot(
                run.points[slot],
                info,
                run.md.iv,
                self.criteria[info.sensor],
                run.stops.get(slot) or unseen_stop(run.points[slot], run.md.iv, bool(problems)),
                rule=self.rule,
                problems=[*problems, *missing],
            )
            results[slot] = result
            official = self._official(uid, slot, info, run.points[slot])
            combined[slot] = combine(
                result.to_json(), official, self.itk.verdict, [*problems, *missing]
            )
            log.info("IV run %s, slot %s: %s %s", uid, slot, result.verdict, result.reasons)
        summary = summarise(combined)
        self.results = {int(slot): result for slot, result in results.items()}
        self.summaries[uid] = summary
        while len(self.summaries) > self.SUMMARIES_KEPT:
            del self.summaries[next(iter(self.summaries))]
        if self.publish is not None:
            _guarded("publishing the results", self.publish, uid, summary)
        for listener in self.on_result:
            _guarded("a result listener", listener, uid, dict(self.results))

    def _official(
        self, uid: str, slot: str, info: SlotInfo, points: Sequence[IVPoint]
    ) -> dict[str, Any]:
        """The official analysis of one slot; a failure of the tool is recorded, never raised."""
        layer = info.layer or ("L0" if info.sensor is SensorType.THREE_D else "L1")
        label = f"IV run {uid} (slot {slot}, module {info.module_id})"
        try:
            return official_iv(points, layer, self.itk, serial_number=info.module_id, run=label)
        except AnalysisError as exc:
            return not_analysed(layer, str(exc), self.itk)
        except Exception as exc:  # the tool's own errors: keep the run's other results
            log.exception("%s: module-qc-analysis-tools failed", label)
            return not_analysed(layer, f"module-qc-analysis-tools failed: {exc!r}", self.itk)


def unseen_stop(
    points: Sequence[IVPoint], settings: IVSettings | None, interrupted: bool = False
) -> str:
    """The stop reason of a slot whose stop no event showed (the run ended right after it)."""
    last = points[-1].current if points else 0.0
    if settings is not None and abs(last) >= COMPLIANCE_FRACTION * settings.compliance:
        return "compliance"
    return "error" if interrupted else "done"


def _cell(data: Mapping[str, list[Any]], key: str | None, row: int) -> float | None:
    """The finite number in column `key` at `row`, or None."""
    try:
        number = float(data[key][row]) if key is not None else math.nan
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _guarded(what: str, call: Callable[..., object], *args: Any) -> None:
    """Call a consumer of the results; its failure is logged, never raised into the RunEngine."""
    try:
        call(*args)
    except Exception:
        log.exception(
            "IV analysis: %s failed; the results stay in IVAnalysis.summaries (the last %d runs)",
            what,
            IVAnalysis.SUMMARIES_KEPT,
        )


__all__ = [  # the rules are re-exported: plans and tests import them from here
    "COMPLIANCE_FRACTION",
    "STOP_REASONS",
    "AnalysisError",
    "Criteria",
    "IVAnalysis",
    "IVPoint",
    "SlotResult",
    "analyse_slot",
    "criteria_for",
    "find_breakdown",
    "normalise_to_20c",
    "summarise",
    "unseen_stop",
]
