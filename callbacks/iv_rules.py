"""The IV rules of QUALIFICATION.md: criteria per sensor type, 20 °C normalisation, breakdown.

Used by the live analysis (`teststand.callbacks.iv_analysis`) and by the IV plans, which stop a
slot at breakdown during the scan with the same `find_breakdown`.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from teststand.config import SensorType
from teststand.errors import TeststandError

E_GAP_EV = 1.21
K_BOLTZMANN_EV_PER_K = 8.617e-5
ZERO_C_IN_K = 273.15
Rule = Literal["itk", "robust"]


class AnalysisError(TeststandError, ValueError):
    """Analysis input that makes no sense (a temperature below absolute zero, a bad criterion)."""


class IVPoint(NamedTuple):
    voltage: float  # V
    current: float  # A
    temperature: float | None = None  # degC of the module, None when not measured


def normalise_to_20c(current: float, temperature_c: float, reference_c: float = 20.0) -> float:
    """`current` measured at `temperature_c` scaled to `reference_c` (E_g = 1.21 eV)."""
    t, t_ref = temperature_c + ZERO_C_IN_K, reference_c + ZERO_C_IN_K
    if t <= 0 or t_ref <= 0:
        raise AnalysisError(
            f"temperatures {temperature_c} °C and {reference_c} °C must be above absolute zero:"
            " pass degrees Celsius"
        )
    exponent = -E_GAP_EV / (2 * K_BOLTZMANN_EV_PER_K) * (1 / t_ref - 1 / t)
    return current * (t_ref / t) ** 2 * math.exp(exponent)


@dataclass(frozen=True)
class Criteria:
    """Pass/fail numbers for one sensor type (V, A, A/cm²)."""

    sensor: SensorType
    depletion_voltage: float
    operating_offset: float  # operating voltage = depletion voltage + this
    breakdown_margin: float  # breakdown must be at or above depletion voltage + this
    breakdown_ratio: float  # breakdown: I(V) > ratio * I(V - back_step)
    leakage_limit: float  # A/cm² at the operating voltage, at 20 °C
    back_step: float = 5.0
    robust_ratio: float = 1.5
    robust_current: float = 20e-6
    voltage_tolerance: float = 2.0  # the HV supply's settle tolerance
    #: A rise smaller than this (A) is read-out resolution, never breakdown: a cold sensor's
    #: tens of nA make 0.01 µA steps look like large ratios.
    noise_floor: float = 50e-9

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self)[1:]:
            value = getattr(self, f.name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise AnalysisError(f"criterion {f.name}={value!r} must be a number >= 0")
        if self.back_step <= 0:
            raise AnalysisError(f"criterion back_step={self.back_step} must be above 0 V")

    @property
    def operating_voltage(self) -> float:
        return self.depletion_voltage + self.operating_offset

    @property
    def breakdown_threshold(self) -> float:
        return self.depletion_voltage + self.breakdown_margin


DEFAULT_CRITERIA = {
    SensorType.PLANAR: Criteria(SensorType.PLANAR, 50.0, 50.0, 70.0, 1.2, 1.5e-6),
    SensorType.THREE_D: Criteria(SensorType.THREE_D, 5.0, 20.0, 20.0, 2.0, 5e-6),
}


def criteria_for(sensor: SensorType | str, **overrides: float) -> Criteria:
    """QUALIFICATION.md's criteria for `sensor`, with a stand's `overrides` applied."""
    try:
        defaults = DEFAULT_CRITERIA[SensorType(sensor)]
    except ValueError:
        raise AnalysisError(f"unknown sensor type {sensor!r}: use 'planar' or '3d'") from None
    known = {f.name for f in dataclasses.fields(Criteria)} - {"sensor"}
    if unknown := set(overrides) - known:
        raise AnalysisError(f"unknown criteria {sorted(unknown)}: choose from {sorted(known)}")
    changes: dict[str, Any] = dict(overrides)
    return dataclasses.replace(defaults, **changes)


def bracket(xs: Sequence[float], x: float, tol: float) -> tuple[int, int, float] | None:
    """(i0, i1, w) with y(x) = (1 - w)·y[i0] + w·y[i1] over ascending xs; clamped within tol."""
    if not xs or x < xs[0] - tol or x > xs[-1] + tol:
        return None
    if x <= xs[0]:
        return 0, 0, 0.0
    if x >= xs[-1]:
        return len(xs) - 1, len(xs) - 1, 0.0
    i = bisect.bisect_left(xs, x)
    return i - 1, i, (x - xs[i - 1]) / (xs[i] - xs[i - 1])


def _at(xs: Sequence[float], ys: Sequence[float], x: float, tol: float) -> float | None:
    found = bracket(xs, x, tol)
    return None if found is None else (1 - found[2]) * ys[found[0]] + found[2] * ys[found[1]]


def find_breakdown(
    voltages: Sequence[float], currents: Sequence[float], criteria: Criteria, rule: Rule = "itk"
) -> float | None:
    """The first voltage V where the current rises too fast, or None.

    Only V with V − 5 V at or above V_depl count (as the ITk 3D spec: below depletion a healthy
    sensor's current rises like √V, which would pass for a breakdown of a 3D sensor at 6 V).

    "itk": I(V) > breakdown_ratio · I(V − 5 V). "robust": I(V)/I(V − 5 V) > 1.5 and either the
    next 5 V ratio is too, or I(V + 5 V) > 20 µA. Points 5 V away are interpolated.
    """
    if len(voltages) != len(currents):
        raise AnalysisError(f"{len(voltages)} voltages but {len(currents)} currents: pass pairs")
    if rule not in ("itk", "robust"):
        raise AnalysisError(f"unknown breakdown rule {rule!r}: use 'itk' or 'robust'")
    pairs = sorted(zip((abs(v) for v in voltages), (abs(i) for i in currents), strict=True))
    xs, ys = [v for v, _ in pairs], [i for _, i in pairs]
    step, tol = criteria.back_step, criteria.voltage_tolerance

    def ratio(v: float) -> float | None:
        now, back = _at(xs, ys, v, tol), _at(xs, ys, v - step, tol)
        if now is None or back is None or back <= 0 or now - back < criteria.noise_floor:
            return None
        return now / back

    for v in xs:
        r = ratio(v)
        if v - step < criteria.depletion_voltage or r is None:
            continue
        if rule == "itk" and r > criteria.breakdown_ratio:
            return v
        if rule == "robust" and r > criteria.robust_ratio:
            r_next, i_next = ratio(v + step), _at(xs, ys, v + step, tol)
            if (r_next or 0) > criteria.robust_ratio or (i_next or 0) > criteria.robust_current:
                return v
    return None
