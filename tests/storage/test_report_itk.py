"""The report shows the official and the live verdict of each stage and flags a disagreement
with its reason (a cold IV: the official analysis judges it as measured, the live one at 20 °C)."""

from __future__ import annotations

import html

from teststand.app.report.model import StageResult, judge
from teststand.app.report.render import module_html
from teststand.callbacks.itk_compare import combine
from teststand.callbacks.itk_official import official_iv
from teststand.callbacks.iv_analysis import IVPoint, analyse_slot, criteria_for
from teststand.callbacks.schema import SlotInfo
from teststand.config import SensorType

MODULE = "20UPGM22110001"


def stage(name: str, uid: str, celsius: float) -> StageResult:
    points = [IVPoint(float(v), 4e-6, celsius) for v in range(5, 205, 5)]
    info = SlotInfo(module_id=MODULE, sensor=SensorType.PLANAR, area_cm2=15.92, max_bias=250)
    live = analyse_slot(points, info, None, criteria_for(info.sensor), "done").to_json()
    result = combine(live, official_iv(points, "L2", serial_number=MODULE))
    voltages, currents = tuple(p.voltage for p in points), tuple(p.current for p in points)
    return StageResult(name, uid, 0.0, "1", result, False, voltages, currents)


def test_both_verdicts_and_the_flagged_disagreement() -> None:
    warm, cold = stage("INITIAL_WARM", "run-warm", 20.0), stage("INITIAL_COLD", "run-cold", -25.0)
    assert warm.result["disagreement"] == [] and warm.verdict == "pass"  # 0.25 µA/cm² at 20 °C
    report = judge(MODULE, 2, [warm, cold], [], "INITIAL_COLD")
    page = html.unescape(module_html(report, {}))
    flagged = page.split('id="disagreements"')[1].split("</div>")[0]
    assert "INITIAL_COLD: leakage: live " in flagged and "INITIAL_WARM" not in flagged
    assert "the official analysis does not normalise a cold IV" in flagged
    cold_row = page.split('id="stage-INITIAL_COLD"')[1].split("</tr>")[0]
    assert "pass (L2): V_bd ≥ 200 (none found), leakage 0.2510 µA/cm² as measured" in cold_row
    assert "fail: leakage current" in cold_row and 'class="disagree"' in cold_row
    assert cold.verdict == "pass"  # the stored verdict is the official one
