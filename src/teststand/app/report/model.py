"""What a module report holds, the stage-to-stage limits of QUALIFICATION.md and the verdict."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from teststand.callbacks.schema import STAGES
from teststand.errors import TeststandError

#: QUALIFICATION.md: between stages the leakage current may at most double ...
LEAKAGE_GROWTH = 2.0
#: ... and the breakdown voltage may drop by at most 10 V.
BREAKDOWN_DROP = 10.0
Verdict = Literal["pass", "fail", "incomplete"]


class ReportError(TeststandError, ValueError):
    """A report that cannot be made as asked."""


class UnknownModule(ReportError):
    """No run in Tiled names this module."""


@dataclass(frozen=True)
class StageResult:
    """One stage of a module: the newest completed IV run of that stage and its analysis."""

    stage: str
    uid: str
    time: float
    slot: str
    result: Mapping[str, Any]  # the per-slot fields of the IV run contract
    recomputed: bool  # True: analysed here, the run had no stored analysis for the module
    voltages: tuple[float, ...]  # |V| of the "measuring" points, scan order
    currents: tuple[float, ...]  # |I| in A
    start: Mapping[str, Any] = field(default_factory=dict)  # the run's start document
    link: str = ""  # the run in Tiled

    @property
    def slot_info(self) -> Mapping[str, Any]:
        """The module's entry of the run's `slots` (sensor, area_cm2, ...)."""
        info = (self.start.get("slots") or {}).get(self.slot)
        return info if isinstance(info, Mapping) else {}

    @property
    def verdict(self) -> str:
        return str(self.result.get("verdict") or "unknown")


@dataclass(frozen=True)
class Comparison:
    """One stage against the previous stage of the flow that has an IV result."""

    stage: str
    previous: str
    leakage_ratio: float | None  # None: a leakage current is unknown
    breakdown_drop: float | None  # the least drop the results prove, V; None: none proven
    problems: tuple[str, ...]


@dataclass(frozen=True)
class TemperatureTrace:
    uid: str
    test: str
    stage: str
    times: tuple[float, ...]  # event times, s since the epoch
    values: tuple[float, ...]  # degC


@dataclass(frozen=True)
class ModuleReport:
    module_id: str
    runs: int
    stages: tuple[StageResult, ...]  # in the flow's order
    comparisons: tuple[Comparison, ...]
    temperatures: tuple[TemperatureTrace, ...]
    verdict: Verdict
    reasons: tuple[str, ...]
    last_stage: str | None


def stage_order(stage: str) -> int:
    """Position in the flow; TEST (outside the flow) and unknown stages come first."""
    return STAGES.index(stage) if stage in STAGES and stage != "TEST" else -1


def volts_text(volts: float) -> str:
    return f"{round(volts, 2):g} V"


def microamps_text(amps: float) -> str:
    return f"{amps * 1e6:.3f} µA"


def finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def compare(
    previous_stage: str,
    previous: Mapping[str, Any],
    stage: str,
    current: Mapping[str, Any],
) -> Comparison:
    """QUALIFICATION.md's stage-to-stage limits between two per-slot IV results.

    A breakdown of None means none was found up to `max_voltage`, i.e. it is at or above it: a
    drop counts only where the results prove it (previous >= its bound, current known).
    """
    problems: list[str] = []
    ratio: float | None = None
    before, now = finite(previous.get("leakage_current")), finite(current.get("leakage_current"))
    if before is not None and now is not None and before > 0:
        ratio = now / before
        if ratio > LEAKAGE_GROWTH:
            problems.append(
                f"leakage current at the operating voltage rose from {microamps_text(before)} "
                f"({previous_stage}) to {microamps_text(now)}, ×{ratio:.2f}: "
                f"at most ×{LEAKAGE_GROWTH:g} is allowed"
            )
    drop: float | None = None
    old_bd, old_max = finite(previous.get("breakdown_voltage")), previous.get("max_voltage")
    lower = old_bd if old_bd is not None else finite(old_max)
    new_bd = finite(current.get("breakdown_voltage"))
    if lower is not None and new_bd is not None:
        drop = lower - new_bd
        if drop > BREAKDOWN_DROP:
            was = volts_text(lower) if old_bd is not None else f"≥ {volts_text(lower)} (none found)"
            by = "" if old_bd is not None else "at least "
            problems.append(
                f"breakdown voltage fell from {was} ({previous_stage}) to {volts_text(new_bd)}, by "
                f"{by}{volts_text(drop)}: at most {volts_text(BREAKDOWN_DROP)} is allowed"
            )
    return Comparison(stage, previous_stage, ratio, drop, tuple(problems))


def judge(
    module_id: str,
    runs: int,
    stages: list[StageResult],
    temperatures: list[TemperatureTrace],
    last_stage: str | None,
) -> ModuleReport:
    """The verdict, from the qualification stages only: fail on a failed stage or a
    stage-to-stage limit, incomplete without an IV run of a stage. TEST runs are reported but
    never change it."""
    flow = [s for s in stages if stage_order(s.stage) >= 0]
    comparisons = [
        compare(before.stage, before.result, now.stage, now.result)
        for before, now in itertools.pairwise(flow)
    ]
    reasons: list[str] = []
    for s in flow:
        if s.verdict == "fail":
            why = "; ".join(str(r) for r in s.result.get("reasons") or []) or "no reason recorded"
            reasons.append(f"{s.stage}: the IV analysis failed (run {s.uid}): {why}")
    for c in comparisons:
        reasons += [f"{c.stage} against {c.previous}: {problem}" for problem in c.problems]
    verdict: Verdict = "fail" if reasons else "pass"
    if not flow:
        verdict = "incomplete"
        reasons = ["no completed IV run of a qualification stage of this module in Tiled"]
    elif not reasons and (unknown := [s for s in flow if s.verdict not in ("pass", "fail")]):
        verdict = "incomplete"
        reasons = [f"{s.stage}: the IV run {s.uid} has no analysis" for s in unknown]
    return ModuleReport(
        module_id,
        runs,
        tuple(stages),
        tuple(comparisons),
        tuple(temperatures),
        verdict,
        tuple(reasons),
        last_stage,
    )


# ---- output ----
