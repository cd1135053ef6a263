"""The official IV analysis (module-qc-analysis-tools, shipped cuts) beside the live one.

Curves are built by hand so that each of the known differences (cold IVs, breakdown definition,
cut values) decides a verdict on its own; the stand options then switch that one rule.
"""

from __future__ import annotations

import logging

import pytest

from teststand.callbacks.itk_compare import combine, disagreement
from teststand.callbacks.itk_official import OfficialAnalysisError, official_iv
from teststand.callbacks.iv_analysis import IVPoint, analyse_slot, criteria_for
from teststand.callbacks.schema import SlotInfo
from teststand.config import SensorType
from teststand.itk import ITkConfig, keep_logging

uA = 1e-6
QUAD = SlotInfo(module_id="20UPGM22110001", sensor=SensorType.PLANAR, area_cm2=15.92, max_bias=250)
TRIPLET = SlotInfo(
    module_id="20UPIMS2110004", sensor=SensorType.THREE_D, area_cm2=12.75, max_bias=120
)


def curve(
    stop: float, step: float, current: float, celsius: float | None = 20.0, rise_at: float = 1e9
) -> list[IVPoint]:
    """A flat `current` (A) from `step` to `stop`, tripling every step from `rise_at` on."""
    points, i, v = [], current, step
    while v <= stop + 1e-9:
        if v >= rise_at:
            i *= 3
        points.append(IVPoint(v, i, celsius))
        v += step
    return points


def live(points: list[IVPoint], info: SlotInfo) -> dict[str, object]:
    return analyse_slot(points, info, None, criteria_for(info.sensor), "done").to_json()


def test_a_good_warm_quad_passes_both_and_they_agree() -> None:
    points = curve(200, 5, 2 * uA)
    official = official_iv(points, "L2", serial_number=QUAD.module_id)
    assert official["verdict"] == "pass" and official["breakdown_voltage"] is None
    assert official["leakage_current"] == pytest.approx(2 * uA)  # 20 °C: normalisation is 1
    assert official["leakage_current_density"] == pytest.approx(2 / 15.92 * uA, rel=1e-2)
    assert official["breakdown_cut"] == 120 and official["leakage_limit"] == pytest.approx(1.5 * uA)
    stored = combine(live(points, QUAD), official)
    assert stored["verdict"] == stored["live_verdict"] == "pass" and stored["disagreement"] == []


def test_a_cold_iv_is_judged_as_measured_unless_the_stand_normalises_it() -> None:
    points = curve(200, 5, 4 * uA, celsius=-25.0)  # 0.25 µA/cm² cold, ~3.7 µA/cm² at 20 °C
    ours = live(points, QUAD)
    official = official_iv(points, "L2")
    assert ours["verdict"] == "fail" and official["verdict"] == "pass"
    assert official["cold"] and not official["normalised"]
    (why,) = disagreement(ours, official)
    assert why.startswith("leakage: live ") and "(normalised to 20 °C)" in why
    assert "as measured at -25.0 °C: the official analysis does not normalise a cold IV" in why
    normalised = official_iv(points, "L2", ITkConfig(normalise_cold=True))
    assert normalised["verdict"] == "fail" and normalised["normalised"]
    assert normalised["rules"]["normalise_cold"] is True
    assert disagreement(ours, normalised) == []


def test_the_breakdown_definitions_differ_and_the_stand_may_take_ours() -> None:
    # a steep rise from 150 V that stays far below the tool's 40 µA compliance
    points = curve(160, 5, 0.1 * uA, rise_at=155)  # 0.3 µA at 155 V, 0.9 µA at 160 V
    ours = live(points, QUAD)
    official = official_iv(points, "L2")
    assert ours["breakdown_voltage"] == 155 and ours["verdict"] == "pass"  # 155 V >= 120 V
    assert official["breakdown_voltage"] is None and official["verdict"] == "pass"
    early = [IVPoint(p.voltage, p.current * (9 if p.voltage >= 110 else 1), 20.0) for p in points]
    ours, official = live(early, QUAD), official_iv(early, "L2")
    assert ours["breakdown_voltage"] == 110 and ours["verdict"] == "fail"
    assert official["verdict"] == "pass"  # 8 µA: below both the leakage limit and compliance
    (why,) = disagreement(ours, official)
    assert why.startswith("breakdown: live 110 V against at least 120 V")
    assert "official none found against at least 120 V (the current reaching the leakage" in why
    ratio = official_iv(early, "L2", ITkConfig(breakdown="ratio"))
    assert ratio["breakdown_voltage"] == 110 and ratio["verdict"] == "fail"
    assert ratio["reasons"] == ["breakdown at 110 V is below the 120 V cut for L2"]


def test_the_3d_leakage_cut_is_the_tools_unless_the_stand_takes_qualification_md() -> None:
    points = curve(60, 1, 7 * 12.75 * uA)  # 7 µA/cm²: above our 5, below the tool's 10
    ours, official = live(points, TRIPLET), official_iv(points, "L0")
    assert ours["verdict"] == "fail" and official["verdict"] == "pass"
    assert official["leakage_limit"] == pytest.approx(10 * uA)
    qualification = official_iv(points, "L0", ITkConfig(cuts="qualification"))
    assert qualification["leakage_limit"] == pytest.approx(5 * uA)
    assert qualification["verdict"] == "fail"
    stored = combine(ours, official, "live")
    assert stored["verdict"] == "fail" and stored["official"]["verdict"] == "pass"


def test_too_few_points_name_the_run_and_say_why() -> None:
    with pytest.raises(OfficialAnalysisError, match=r"IV run abc has 1 valid IV point\(s\)"):
        official_iv(curve(5, 5, uA), "L2", run="IV run abc")
    with pytest.raises(OfficialAnalysisError, match=r"at least 6 for an L0 module.*second deriv"):
        official_iv(curve(5, 1, uA), "L0", run="IV run abc")


def test_importing_the_tools_leaves_the_stand_loggers_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    mine = logging.getLogger("teststand.test_itk")
    with keep_logging():
        import module_qc_database_tools  # noqa: F401  (its import calls dictConfig)
    mine.warning("still heard")
    assert not mine.disabled and "still heard" in caplog.text
