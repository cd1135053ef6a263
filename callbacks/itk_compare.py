"""The live and the official IV verdicts side by side, and why they disagree.

`combine(live, official, source)` is one slot's stored result: the live analysis's numbers (as
before), `verdict` and `reasons` of the verdict the stand adopts (`itk.verdict`, official by
default), `live_verdict`/`live_reasons`, the `official` result and `disagreement`: one sentence
per rule that judged the module differently (empty when the verdicts agree).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from teststand.itk import Verdict


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _volts(value: float | None, none: str = "none found") -> str:
    return none if value is None else f"{round(value, 2):g} V"


def _density(value: float | None) -> str:
    return "not measured (V_op not reached)" if value is None else f"{value * 1e6:.3g} µA/cm²"


def _breakdown_rule(official: Mapping[str, Any]) -> str:
    rule = (official.get("rules") or {}).get("breakdown", "official")
    if rule != "official":
        return f"QUALIFICATION.md's {rule} rule (stand option itk.breakdown)"
    if official.get("layer") == "L0":
        return "the knee of the curve, largest d²I/dV²"
    return "the current reaching the leakage limit below V_op or 40 µA above it"


def _leakage_basis(official: Mapping[str, Any]) -> str:
    if official.get("normalised"):
        return "normalised to 20 °C"
    if official.get("cold"):
        temperature = _number(official.get("temperature"))
        at = f" at {temperature:.1f} °C" if temperature is not None else ""
        return f"as measured{at}: the official analysis does not normalise a cold IV"
    return "as measured: no temperature was recorded"


def disagreement(live: Mapping[str, Any], official: Mapping[str, Any]) -> list[str]:
    """Why the live and the official verdicts differ, one sentence per rule; [] if they agree."""
    if official.get("verdict") is None:
        why = "; ".join(official.get("reasons") or [])
        return [f"the official analysis gave no verdict ({why}); the live one: {live['verdict']}"]
    if official["verdict"] == live.get("verdict"):
        return []
    found: list[str] = []
    live_bd, threshold = (
        _number(live.get("breakdown_voltage")),
        _number(live.get("breakdown_threshold")),
    )
    off_bd, cut = _number(official.get("breakdown_voltage")), _number(official.get("breakdown_cut"))
    live_bd_fails = live_bd is not None and threshold is not None and live_bd < threshold
    off_bd_fails = off_bd is not None and cut is not None and off_bd < cut
    if live_bd_fails != off_bd_fails:
        found.append(
            f"breakdown: live {_volts(live_bd)} against at least {_volts(threshold)} "
            f"(I(V) against I(V − 5 V), or where the scan stopped); official {_volts(off_bd)} "
            f"against at least {_volts(cut)} ({_breakdown_rule(official)})"
        )
    live_d, limit = _number(live.get("leakage_current_density")), _number(live.get("leakage_limit"))
    off_d, off_limit = (
        _number(official.get("leakage_current_density")),
        _number(official.get("leakage_limit")),
    )
    live_leak_fails = live_d is None or (limit is not None and live_d > limit)
    off_leak_fails = off_d is None or (off_limit is not None and off_d > off_limit)
    if live_leak_fails != off_leak_fails:
        found.append(
            f"leakage: live {_density(live_d)} (normalised to 20 °C) against at most "
            f"{_density(limit)}; official {_density(off_d)} ({_leakage_basis(official)}) against "
            f"at most {_density(off_limit)}"
        )
    if not found:
        live_why = "; ".join(live.get("reasons") or []) or "every check passed"
        off_why = "; ".join(official.get("reasons") or []) or "every cut passed"
        found.append(
            f"live {live.get('verdict')}: {live_why}; official {official['verdict']}: {off_why}"
        )
    return found


def combine(
    live: Mapping[str, Any],
    official: Mapping[str, Any],
    source: Verdict = "official",
    problems: Sequence[str] = (),
) -> dict[str, Any]:
    """One slot's stored result: live numbers, both verdicts, the adopted one, disagreements.

    `problems` are failures of the run itself (aborted, no IV keys): they fail either verdict.
    """
    if source == "official":
        reasons = list(official.get("reasons") or [])
        if official.get("verdict") is None:
            reasons = [f"the official analysis could not judge it: {r}" for r in reasons]
        reasons = [*problems, *reasons]
        verdict = "fail" if problems or official.get("verdict") != "pass" else "pass"
    else:
        verdict, reasons = str(live["verdict"]), list(live.get("reasons") or [])
    return {
        **live,
        "verdict": verdict,
        "reasons": reasons,
        "verdict_source": source,
        "live_verdict": live["verdict"],
        "live_reasons": list(live.get("reasons") or []),
        "official": dict(official),
        "disagreement": disagreement(live, official),
    }
