"""The official ITk IV analysis: module-qc-analysis-tools' IV_MEASURE with its shipped cuts.

`official_iv(points, layer)` runs the tool's `analyse` on one module's IV points and returns its
breakdown voltage, leakage current, verdict and the reasons for a failure, in SI units (A, A/cm²)
like the live analysis. `ITkConfig` (the stand file's `itk:` section) may replace one official
rule at a time with QUALIFICATION.md's; the result records which rules it followed.

The tool's conventions: currents in µA; a cold IV (mean temperature below 0 °C) is not normalised
to 20 °C; the planar breakdown is where the current reaches the leakage limit below V_op or the
40 µA compliance above it, the 3D breakdown the knee (largest d²I/dV²); "no breakdown" is -999.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections.abc import Iterator, Sequence
from importlib import metadata
from typing import Any

from teststand.callbacks.iv_rules import AnalysisError, IVPoint, Rule, criteria_for, find_breakdown
from teststand.config import SensorType
from teststand.itk import ITkConfig, keep_logging

TEST_TYPE = "IV_MEASURE"
NO_VALUE = -999  # the tool's "not found"
#: The fewest points the official analysis judges: it refuses a measurement of <= 1 point, and
#: its 3D breakdown (a second derivative) calls the last voltage the breakdown below 6 points.
MIN_POINTS = {"L0": 6, "L1": 2, "L2": 2}
TOOL = f"module-qc-analysis-tools {metadata.version('module-qc-analysis-tools')}"


class OfficialAnalysisError(AnalysisError):
    """IV points the official analysis cannot judge (too few points, an unknown layer)."""


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The tool logs every step at INFO/WARNING on the `analysis` logger: keep its errors only."""
    logger = logging.getLogger("analysis")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def preload() -> None:
    """Import the tool now (about 2 s), not when the first IV run stops."""
    with keep_logging():
        import module_qc_analysis_tools.analysis.iv_measure  # noqa: F401


def sensor_of(layer: str) -> SensorType:
    return SensorType.THREE_D if layer == "L0" else SensorType.PLANAR


def shipped_cuts() -> dict[str, Any]:
    """The IV_MEASURE cuts of the tool's analysis_cuts.json (per layer)."""
    with keep_logging():
        from module_qc_analysis_tools import data
    cuts: dict[str, Any] = json.loads((data / "analysis_cuts.json").read_text())[TEST_TYPE]
    return cuts


def cuts_for(rules: ITkConfig) -> dict[str, Any]:
    """The cuts the rules ask for: the shipped ones, or QUALIFICATION.md's numbers in their form."""
    cuts = shipped_cuts()
    if rules.cuts == "qualification":
        for name, layer in (("LZero", "L0"), ("LOne", "L1"), ("LTwo", "L2")):
            criteria = criteria_for(sensor_of(layer))
            cuts["LEAK_PER_AREA"][name]["sel"] = [0, criteria.leakage_limit * 1e6]
            if layer != "L0":  # the tool sets the 3D lower cut to V_op itself (25 V)
                cuts["BREAKDOWN_VOLTAGE"][name]["sel"][0] = criteria.breakdown_margin
    return cuts


def check_points(points: Sequence[IVPoint], layer: str, run: str) -> None:
    """Refuse, naming `run` and why, IV points the official analysis cannot judge."""
    if layer not in MIN_POINTS:
        raise OfficialAnalysisError(f"{run}: layer {layer!r} is not one of L0, L1, L2")
    need = MIN_POINTS[layer]
    if len(points) < need:
        why = (
            "its 3D breakdown is a second derivative: below 6 points it would call the last "
            "voltage the breakdown"
            if layer == "L0"
            else "it refuses a measurement of one point or none"
        )
        raise OfficialAnalysisError(
            f"{run} has {len(points)} valid IV point(s); the official IV_MEASURE analysis needs "
            f"at least {need} for an {layer} module ({why}): measure the IV again"
        )


def _finite(value: Any) -> float | None:
    number = float(value)
    return None if number == NO_VALUE or not math.isfinite(number) else number


def official_iv(
    points: Sequence[IVPoint],
    layer: str,
    rules: ITkConfig | None = None,
    *,
    serial_number: str = "",
    run: str = "the IV run",
) -> dict[str, Any]:
    """The official analysis of one module's IV `points` (magnitudes, A, °C), as a plain dict."""
    with keep_logging():
        from module_qc_analysis_tools.analysis.iv_measure import analyse
        from module_qc_analysis_tools.utils.analysis import (
            depletion_voltage_default,
            get_bounds_and_precision,
            get_layer,
            normalise_current,
            perform_qc_analysis,
            update_iv_cuts,
        )

    rules = rules or ITkConfig()
    check_points(points, layer, run)
    voltages = [abs(p.voltage) for p in points]
    currents = [abs(p.current) * 1e6 for p in points]  # the tool works in µA
    known = [p.temperature for p in points if p.temperature is not None]
    temperatures: list[float] = known if len(known) == len(points) else known[:0]
    mean_t = sum(known) / len(known) if known else None
    cold = mean_t is not None and mean_t < 0
    normalised = mean_t is not None and (not cold or rules.normalise_cold)
    if cold and rules.normalise_cold:  # normalised with the tool's formula, then left alone
        currents = [float(i) for i in normalise_current(currents, known)]
        temperatures = [20.0] * len(points)
    iv_array = {
        "voltage": voltages,
        "current": currents,
        "sigma current": [0.0] * len(points),
        "temperature": temperatures,
        "humidity": [],
    }
    cuts = cuts_for(rules)
    is_3d = layer == "L0"
    with _quiet():
        results, passed, _, _ = analyse(
            iv_array, None, serial_number, layer, None, mean_t, json.dumps(cuts), make_plot=False
        )
        v_depl = depletion_voltage_default(is_3d)
        layer_cuts = update_iv_cuts(cuts, layer, v_depl)
        if rules.breakdown != "official":
            rule: Rule = "itk" if rules.breakdown == "ratio" else "robust"
            ours = find_breakdown(voltages, currents, criteria_for(sensor_of(layer)), rule)
            results["BREAKDOWN_VOLTAGE"] = NO_VALUE if ours is None else ours
            results["NO_BREAKDOWN_VOLTAGE_OBSERVED"] = ours is None
            passed, _, results = perform_qc_analysis(TEST_TYPE, layer_cuts, layer, results)
    qc_layer = get_layer(layer)
    bd_low, _, _ = get_bounds_and_precision(layer_cuts, "BREAKDOWN_VOLTAGE", qc_layer)
    _, leak_high, _ = get_bounds_and_precision(layer_cuts, "LEAK_PER_AREA", qc_layer)
    breakdown = _finite(results["BREAKDOWN_VOLTAGE"])
    leakage = _finite(results["LEAK_CURRENT"])
    per_area = _finite(results["LEAK_PER_AREA"])
    reasons: list[str] = []
    if breakdown is not None and breakdown < bd_low:
        reasons.append(f"breakdown at {breakdown:g} V is below the {bd_low:g} V cut for {layer}")
    if per_area is None:
        reasons.append("no leakage current at the operating voltage: the scan ended below it")
    elif per_area > leak_high:
        reasons.append(
            f"leakage current {per_area:g} µA/cm² is above the {leak_high:g} µA/cm² cut for {layer}"
        )
    return {
        "verdict": "pass" if passed else "fail",
        "layer": layer,
        "breakdown_voltage": breakdown,
        "no_breakdown_observed": bool(results["NO_BREAKDOWN_VOLTAGE_OBSERVED"]),
        "breakdown_cut": float(bd_low),
        "leakage_current": None if leakage is None else leakage * 1e-6,
        "leakage_current_density": None if per_area is None else per_area * 1e-6,
        "leakage_limit": float(leak_high) * 1e-6,
        "max_voltage": float(results["MAXIMUM_VOLTAGE"]),
        "temperature": mean_t,
        "cold": cold,
        "normalised": normalised,
        "rules": rules.model_dump(exclude={"institution"}),
        "tool": TOOL,
        "reasons": reasons,
    }


def not_analysed(layer: str, why: str, rules: ITkConfig | None = None) -> dict[str, Any]:
    """The official result of points the tool cannot judge: no verdict, and why."""
    rules = rules or ITkConfig()
    return {
        "verdict": None,
        "layer": layer,
        "rules": rules.model_dump(exclude={"institution"}),
        "tool": TOOL,
        "reasons": [why],
    }
