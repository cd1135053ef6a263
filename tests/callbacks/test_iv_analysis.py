"""The live IV analysis: hand-computed curves, then the callback on real RunEngine runs.

Expected values are worked out by hand in each test from QUALIFICATION.md's numbers (planar:
V_depl 50 V, operating 100 V, breakdown at least 120 V, I(V) > 1.2·I(V−5 V), 1.5 µA/cm²; 3D:
V_depl 5 V, operating 25 V, breakdown at least 25 V, I(V) > 2·I(V−5 V), 5 µA/cm²).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import bluesky.plan_stubs as bps
import pytest
from bluesky import RunEngine
from bluesky.utils import MsgGenerator, RunEngineInterrupted
from event_model import pack_event_page
from helpers import run
from ophyd_async.core import SignalRW, StandardReadable, soft_signal_rw
from tiled.queries import Contains, Key

from teststand.callbacks.iv_analysis import (
    AnalysisError,
    IVAnalysis,
    IVPoint,
    SlotResult,
    analyse_slot,
    criteria_for,
    find_breakdown,
    normalise_to_20c,
    summarise,
    unseen_stop,
)
from teststand.callbacks.schema import IVSettings, SlotInfo, validate_metadata
from teststand.config import SensorType

uA = 1e-6
PLANAR = criteria_for(SensorType.PLANAR)
THREE_D = criteria_for(SensorType.THREE_D)
SETTINGS = IVSettings(start=0, stop=200, step=5, settle=1.0, compliance=1e-4, polarity="-")


def by_hand(current: float, celsius: float) -> float:
    """QUALIFICATION.md's formula written out again: I(20 °C) from I(T)."""
    t, t_ref = celsius + 273.15, 293.15
    return current * (t_ref / t) ** 2 * math.exp(-1.21 / (2 * 8.617e-5) * (1 / t_ref - 1 / t))


def planar(module: str = "20UPGM22110003", area: float = 15.76) -> SlotInfo:
    return SlotInfo(module_id=module, sensor=SensorType.PLANAR, area_cm2=area, max_bias=250)


def three_d(module: str = "20UPGM23210001") -> SlotInfo:
    return SlotInfo(module_id=module, sensor=SensorType.THREE_D, area_cm2=12.75, max_bias=120)


def curve(
    voltages: Iterator[float] | range, current: Callable[[float], float], celsius: float = 20.0
) -> list[IVPoint]:
    return [IVPoint(v, current(v), celsius) for v in voltages]


def healthy(v: float) -> float:
    """0.1 µA + 0.01 µA/V up to 155 V, then ×1.3 every 5 V: breaks down at 160 V."""
    if v <= 155:
        return (0.1 + 0.01 * v) * uA
    return (0.1 + 0.01 * 155) * uA * 1.3 ** ((v - 155) / 5)


# --- pure functions --------------------------------------------------------------------------


def test_normalisation_by_hand() -> None:
    # -25 °C: (293.15/248.15)² = 1.39556, exp(1.21/(2·8.617e-5)·(1/248.15 − 1/293.15))
    # = exp(7020.99 · 6.1860e-4) = exp(4.3432) = 76.95, so the current at 20 °C is 107.39× higher.
    assert normalise_to_20c(1e-8, -25.0) == pytest.approx(1e-8 * 107.39, rel=1e-4)
    assert normalise_to_20c(1e-8, -25.0) == pytest.approx(by_hand(1e-8, -25.0), rel=1e-12)
    # +27 °C: the rule of thumb "the current doubles every 7 K" gives about 0.5 (here 0.5457).
    assert normalise_to_20c(2e-6, 27.0) == pytest.approx(2e-6 * 0.5457, rel=1e-3)
    assert normalise_to_20c(3e-6, 20.0) == pytest.approx(3e-6, rel=1e-15)
    # another reference temperature: from 20 °C to -25 °C is the inverse.
    assert normalise_to_20c(1e-6, 20.0, reference_c=-25.0) == pytest.approx(1e-6 / 107.39, 1e-4)
    with pytest.raises(AnalysisError, match="above absolute zero"):
        normalise_to_20c(1e-6, -300.0)


def test_criteria_defaults_and_overrides() -> None:
    assert (PLANAR.depletion_voltage, PLANAR.operating_voltage, PLANAR.breakdown_threshold) == (
        50,
        100,
        120,
    )
    assert (PLANAR.breakdown_ratio, PLANAR.leakage_limit) == (1.2, 1.5e-6)
    assert (THREE_D.operating_voltage, THREE_D.breakdown_threshold) == (25, 25)
    assert (THREE_D.breakdown_ratio, THREE_D.leakage_limit) == (2.0, 5e-6)
    stand = criteria_for("planar", depletion_voltage=60, leakage_limit=2e-6)
    assert (stand.operating_voltage, stand.breakdown_threshold, stand.leakage_limit) == (
        110,
        130,
        2e-6,
    )
    assert criteria_for("planar") == PLANAR  # the defaults are untouched
    with pytest.raises(AnalysisError, match=r"unknown criteria \['depletion'\]"):
        criteria_for("planar", depletion=60)
    with pytest.raises(AnalysisError, match="unknown sensor type 'pixel'"):
        criteria_for("pixel")
    with pytest.raises(AnalysisError, match="breakdown_ratio=-1"):
        criteria_for("3d", breakdown_ratio=-1)
    with pytest.raises(AnalysisError, match="another sensor type"):
        IVAnalysis(criteria={SensorType.PLANAR: THREE_D})


def test_planar_breakdown_found_at_the_first_steep_step() -> None:
    points = curve(range(0, 205, 5), healthy)
    # 55..155 V: I(V)/I(V−5) ≤ 0.65/0.60 = 1.083; 160 V: 1.3 > 1.2. Steps from below 50 V
    # (e.g. 0.15/0.1 = 1.5 at 5 V) do not count: the sensor is not depleted there.
    volts, amps = [p.voltage for p in points], [p.current for p in points]
    assert find_breakdown(volts, amps, PLANAR) == 160
    # negative polarity: magnitudes
    assert find_breakdown([-v for v in volts], [-a for a in amps], PLANAR) == 160
    result = analyse_slot(points, planar(), SETTINGS, PLANAR, "done")
    # 100 V: 0.1 + 0.01·100 = 1.1 µA at 20 °C; 1.1 / 15.76 = 0.069797 µA/cm² ≤ 1.5.
    assert result.leakage_current == pytest.approx(1.1 * uA)
    assert result.leakage_current_density == pytest.approx(1.1 / 15.76 * uA)
    assert (result.breakdown_voltage, result.breakdown_threshold) == (160, 120)
    assert (result.operating_voltage, result.max_voltage, result.temperature) == (100, 200, 20)
    assert (result.verdict, result.reasons, result.notes) == ("pass", [], [])
    assert (result.stop_reason, result.compliance_voltage) == ("done", None)


def test_planar_breakdown_below_threshold_fails() -> None:
    # linear to 110 V (1.2 µA), then 1.5 µA at 115 V: 1.5/1.2 = 1.25 > 1.2 -> breakdown at 115 V.
    points = [*curve(range(0, 115, 5), healthy), IVPoint(115, 1.5 * uA, 20.0)]
    result = analyse_slot(points, planar(), SETTINGS, PLANAR, "breakdown")
    assert result.breakdown_voltage == 115
    assert result.reasons == ["breakdown at 115 V is below the 120 V required for planar sensors"]
    assert result.verdict == "fail"
    assert result.leakage_current == pytest.approx(1.1 * uA)  # measured before the breakdown


def test_breakdown_at_the_threshold_passes() -> None:
    # 115 V: 1.25 µA; 120 V: 1.25·1.25 = 1.5625 µA, ratio 1.25 -> breakdown at 120 V = 50 + 70.
    points = [IVPoint(v, (0.1 + 0.01 * v) * uA, 20.0) for v in range(0, 120, 5)]
    points.append(IVPoint(120, (0.1 + 0.01 * 115) * 1.25 * uA, 20.0))
    result = analyse_slot(points, planar(), SETTINGS, PLANAR, "breakdown")
    assert (result.breakdown_voltage, result.verdict) == (120, "pass")


def test_high_leakage_fails() -> None:
    # 0.3 µA/V: ratios ≤ 55/50 = 1.1 above 50 V; 30 µA at 100 V / 15.76 cm² = 1.9036 µA/cm² > 1.5.
    result = analyse_slot(
        curve(range(0, 205, 5), lambda v: 0.3 * uA * v), planar(), SETTINGS, PLANAR, "done"
    )
    assert result.breakdown_voltage is None
    assert result.leakage_current_density == pytest.approx(30 / 15.76 * uA)
    assert result.reasons == [
        "leakage current 1.90 µA/cm² at 100 V (20 °C) is above the 1.5 µA/cm² limit for planar"
        " sensors"
    ]


def three_d_current(v: float) -> float:
    """1 µA + 0.02 µA/V up to 40 V (1.8 µA), then ×1.2 per volt."""
    return (1 + 0.02 * v) * uA if v <= 40 else 1.8 * uA * 1.2 ** (v - 40)


def test_3d_rise_below_depletion_is_no_breakdown() -> None:
    # A healthy 3D sensor: I = 1 µA·√(V/5 V) up to full depletion at 5 V, then 1 µA + 0.01 µA/V.
    # At 6 V, I(6)/I(1) = 1.06/√0.2 = 1.06/0.4472 = 2.370 > 2, but I(1 V) is below depletion;
    # from 10 V on (back point 5 V) the ratio is at most I(10)/I(5) = 1.1/1.0: no breakdown.
    volts = list(range(0, 61))
    amps = [(math.sqrt(v / 5) if v <= 5 else 1 + 0.01 * v) * uA for v in volts]
    assert amps[6] / amps[1] == pytest.approx(2.370, abs=1e-3)
    assert find_breakdown(volts, amps, THREE_D) is None
    # a real early breakdown: ×3 from 11 V on -> I(11)/I(6) = 3.33/1.06 = 3.1 > 2 -> 11 V.
    early = [a * (3 if v >= 11 else 1) for v, a in zip(volts, amps, strict=True)]
    assert find_breakdown(volts, early, THREE_D) == 11


def test_3d_one_volt_steps_compare_five_volts_back() -> None:
    points = curve(range(0, 61), three_d_current)
    # Point to point the current never more than doubles (at most ×1.2), but 5 V back:
    # 43 V: 1.8·1.2³ = 3.1104 / I(38) = 1.76 -> 1.767; 44 V: 1.8·1.2⁴ = 3.73248 / 1.78 = 2.097 > 2.
    ratios = [b.current / a.current for a, b in itertools.pairwise(points)]
    assert max(ratios) == pytest.approx(1.2)
    result = analyse_slot(points, three_d(), SETTINGS, THREE_D, "done")
    assert result.breakdown_voltage == 44
    # 25 V: 1 + 0.5 = 1.5 µA; / 12.75 cm² = 0.11765 µA/cm² ≤ 5; breakdown 44 ≥ 5 + 20.
    assert result.leakage_current == pytest.approx(1.5 * uA)
    assert result.leakage_current_density == pytest.approx(1.5 / 12.75 * uA)
    assert (result.operating_voltage, result.breakdown_threshold, result.verdict) == (
        25,
        25,
        "pass",
    )
    # 2 V steps: no point at 39 V; I(39) is interpolated between 38 and 40 V: (1.76 + 1.8)/2.
    two = curve(range(0, 61, 2), three_d_current)
    assert find_breakdown([p.voltage for p in two], [p.current for p in two], THREE_D) == 44


def test_compliance_before_the_operating_voltage_fails() -> None:
    # 1.25 µA/V: 100 µA (the compliance) at 80 V; ratios ≤ 55/50 = 1.1, so no ratio breakdown:
    # the compliance itself is the breakdown, at 80 V, and 100 V was never reached.
    points = curve(range(0, 85, 5), lambda v: 1.25 * uA * v)
    result = analyse_slot(points, planar(), SETTINGS, PLANAR, "compliance")
    assert (result.breakdown_voltage, result.compliance_voltage, result.max_voltage) == (80, 80, 80)
    assert result.leakage_current is None and result.leakage_current_density is None
    assert result.reasons == [
        "breakdown at 80 V (current compliance of 100 µA) is below the 120 V required for planar"
        " sensors",
        "the scan never reached the 100 V operating voltage: it stopped at 80 V (current"
        " compliance)",
    ]


def test_compliance_above_the_threshold_is_the_breakdown_voltage() -> None:
    # A stand with a 10 µA compliance: I = V/15 µA reaches it at 150 V; at 100 V 6.667 µA,
    # 6.667/15.76 = 0.423 µA/cm²; ratios ≤ 1.1 above 50 V; breakdown = compliance at 150 ≥ 120.
    settings = SETTINGS.model_copy(update={"compliance": 1e-5})
    points = curve(range(0, 155, 5), lambda v: v / 15 * uA)
    result = analyse_slot(points, planar(), settings, PLANAR, "compliance")
    assert (result.breakdown_voltage, result.compliance_voltage, result.verdict) == (
        150,
        150,
        "pass",
    )
    assert result.leakage_current_density == pytest.approx(100 / 15 / 15.76 * uA)


def test_cold_scan_is_normalised_to_20c() -> None:
    # The same module warm (20 °C) and cold (-25 °C): the cold currents are 107.39× lower.
    warm = analyse_slot(curve(range(0, 205, 5), healthy), planar(), SETTINGS, PLANAR, "done")
    cold_points = curve(range(0, 205, 5), lambda v: healthy(v) / 107.3914, celsius=-25.0)
    cold = analyse_slot(cold_points, planar(), SETTINGS, PLANAR, "done")
    assert cold_points[20].current == pytest.approx(1.1 * uA / 107.39, rel=1e-4)
    assert cold.leakage_current == pytest.approx(warm.leakage_current, rel=1e-5)
    assert (cold.temperature, warm.temperature) == (-25.0, 20.0)
    # The supply reads back 1 V low: 99 V (-25.2 °C) and 104 V (-24.8 °C) surround 100 V, so
    # w = (100 − 99)/5 = 0.2: 0.8·I20(99 V point) + 0.2·I20(104 V point), T = -25.12 °C.
    temps = {100: -25.2, 105: -24.8}
    lagging = [
        IVPoint(v - 1, healthy(v) / by_hand(1.0, temps.get(v, -25.0)), temps.get(v, -25.0))
        for v in range(0, 205, 5)
    ]
    # the 160 V step rises by ~20 nA at -25 °C: below the default noise floor, so count it
    result = analyse_slot(lagging, planar(), SETTINGS, replace(PLANAR, noise_floor=0), "done")
    i99 = by_hand(lagging[20].current, -25.2)  # = 1.1 µA again
    i104 = by_hand(lagging[21].current, -24.8)  # = 1.15 µA
    assert (i99, i104) == (pytest.approx(1.1 * uA), pytest.approx(1.15 * uA))
    assert result.leakage_current == pytest.approx(0.8 * i99 + 0.2 * i104)
    assert result.temperature == pytest.approx(0.8 * -25.2 + 0.2 * -24.8)
    assert result.breakdown_voltage == 159  # the steep step, read back at 160 − 1 V


def test_readout_resolution_is_no_breakdown() -> None:
    # A cold module's 30 nA read in 10 nA steps: 30 -> 40 nA is a ratio of 1.33 > 1.2, but a
    # 10 nA rise is below the 50 nA noise floor, so no breakdown is found.
    points = [IVPoint(v, (30 if v < 60 else 40) * 1e-9, -20.0) for v in range(0, 205, 5)]
    assert find_breakdown([p.voltage for p in points], [p.current for p in points], PLANAR) is None
    steep = [IVPoint(v, (30 if v < 60 else 130) * 1e-9, -20.0) for v in range(0, 205, 5)]
    assert find_breakdown([p.voltage for p in steep], [p.current for p in steep], PLANAR) == 60


def test_missing_temperature_assumes_20c_with_a_note() -> None:
    points = [IVPoint(v, (0.1 + 0.01 * v) * uA) for v in range(0, 205, 5)]
    result = analyse_slot(points, planar(), SETTINGS, PLANAR, "done")
    assert (result.leakage_current, result.temperature) == (pytest.approx(1.1 * uA), None)
    assert result.notes == ["no module temperature at 100 V: assumed 20 °C, not normalised"]
    assert result.verdict == "pass"


def test_no_valid_points_and_errors_fail_with_a_reason() -> None:
    empty = analyse_slot([], planar(), None, PLANAR, "error")
    assert empty.reasons == ["no valid IV points were measured (the scan stopped: error)"]
    assert (empty.verdict, empty.max_voltage, empty.breakdown_voltage) == ("fail", None, None)
    nan = analyse_slot([IVPoint(5, math.nan, 20.0)], planar(), None, PLANAR, "done")
    assert nan.reasons[0].startswith("no valid IV points")
    stopped = analyse_slot(curve(range(0, 150, 5), healthy), planar(), None, PLANAR, "error")
    assert stopped.reasons == ["the scan stopped on an error at 145 V: repeat the measurement"]
    short = analyse_slot(curve(range(0, 115, 5), healthy), planar(), None, PLANAR, "done")
    assert short.verdict == "pass"  # no breakdown seen, but the scan did not verify 120 V
    assert short.notes == ["no breakdown up to 110 V, but the scan ended below 120 V"]


def test_robust_rule() -> None:
    volts = list(range(0, 205, 5))
    # A single step of 1.3 at 130 V: breakdown for the ITk rule, noise for the robust one; then
    # 170 V: 2.0/1.3 = 1.54 and 175 V: 3.2/2.0 = 1.6, two ratios above 1.5 -> robust 170 V.
    spike = {130: 1.3, 135: 1.3, 140: 1.3, 145: 1.3, 150: 1.3, 155: 1.3, 160: 1.3, 165: 1.3}
    spike |= {170: 2.0, 175: 3.2, 180: 3.3, 185: 3.3, 190: 3.3, 195: 3.3, 200: 3.3}
    amps = [spike.get(v, 1.0) * uA for v in volts]
    assert find_breakdown(volts, amps, PLANAR) == 130
    assert find_breakdown(volts, amps, PLANAR, rule="robust") == 170
    # One ratio 16/10 = 1.6 at 150 V, then 21 µA at 155 V (ratio 1.31, but above 20 µA).
    jump = [(10 if v < 150 else 16 if v == 150 else 21) * uA for v in volts]
    assert find_breakdown(volts, jump, PLANAR, rule="robust") == 150
    # the same with 19 µA at 155 V: neither a second ratio above 1.5 nor 20 µA -> none.
    low = [(10 if v < 150 else 16 if v == 150 else 19) * uA for v in volts]
    assert find_breakdown(volts, low, PLANAR, rule="robust") is None
    points = [IVPoint(v, a, 20.0) for v, a in zip(volts, amps, strict=True)]
    result = analyse_slot(points, planar(), None, PLANAR, "done", rule="robust")
    assert (result.breakdown_voltage, result.verdict) == (170, "pass")
    with pytest.raises(AnalysisError, match="unknown breakdown rule 'strict'"):
        find_breakdown(volts, amps, PLANAR, rule="strict")  # type: ignore[arg-type]
    with pytest.raises(AnalysisError, match="3 voltages but 2 currents"):
        find_breakdown([1, 2, 3], [1, 2], PLANAR)


# --- the callback on real RunEngine runs ------------------------------------------------------


class Slot(StandardReadable):
    """Soft signals named like a stand slot's: `slotN-bias`, `-leakage_current`, `-temperature`."""

    def __init__(self, name: str = "") -> None:
        with self.add_children_as_readables():
            self.bias = soft_signal_rw(float, units="V")
            self.leakage_current = soft_signal_rw(float, units="A")
            self.temperature = soft_signal_rw(float, units="degC")
        super().__init__(name=name)


class Stand:
    """Slots 3 and 5 with their state signals and the nominal step, connected on the RE loop."""

    def __init__(self, RE: RunEngine) -> None:
        self.slots = {n: Slot(name=f"slot{n}") for n in (3, 5)}
        self.states = {
            n: soft_signal_rw(str, "measuring", name=f"iv-slot{n}_state") for n in (3, 5)
        }
        self.voltage = soft_signal_rw(float, name="iv_voltage", units="V")
        devices = [*self.slots.values(), *self.states.values(), self.voltage]
        run(RE, lambda: asyncio.gather(*(d.connect() for d in devices)))
        self.readables = devices

    def metadata(self, test: str = "iv") -> dict[str, Any]:
        keys = {
            str(n): {
                "bias": f"slot{n}-bias",
                "current": f"slot{n}-leakage_current",
                "temperature": f"slot{n}-temperature",
                "state": f"iv-slot{n}_state",
            }
            for n in self.slots
        }
        return validate_metadata(
            stand="bench",
            operator="tester",
            test=test,
            stage="INITIAL_WARM",
            slots={"3": planar("20UPGM22110003"), "5": planar("20UPGM22110005")},
            iv=SETTINGS,
            iv_keys=keys if test == "iv" else {},
        ).start_metadata()

    def plan(
        self,
        md: dict[str, Any],
        stop: float = 170,
        stop_at: float | None = None,
        fail_at: float | None = None,
    ) -> MsgGenerator[None]:
        """Negative polarity; slot 3 is healthy, slot 5 draws 1.25 µA/V into compliance at 80 V."""
        yield from bps.open_run(md)
        for v in range(0, int(stop) + 5, 5):
            s3, s5 = self.slots[3], self.slots[5]
            five = v <= 80
            signals: list[tuple[SignalRW[Any], Any]] = [
                (self.voltage, v),
                (s3.bias, -v),
                (s3.leakage_current, -healthy(v)),
                (s3.temperature, 20.0),
                (s5.bias, -v if five else 0.0),
                (s5.leakage_current, -1.25 * uA * v if five else 0.0),
                (s5.temperature, 20.0),
                (self.states[5], "measuring" if five else "compliance"),
            ]
            yield from bps.mv(*itertools.chain.from_iterable(signals))
            yield from bps.trigger_and_read(self.readables)
            if v == stop_at:
                yield from bps.pause()
            if v == fail_at:
                raise RuntimeError("chiller link lost")
        yield from bps.close_run()


@pytest.fixture
def stand(RE: RunEngine) -> Stand:
    return Stand(RE)


def check_full_run(summary: dict[str, Any]) -> None:
    slots = summary["analysis"]["slots"]
    assert summary["verdict"] == "fail"
    assert summary["analysis"]["passed"] == ["20UPGM22110003"]
    assert summary["analysis"]["failed"] == ["20UPGM22110005"]
    # slot 3: the healthy planar curve to 170 V (see the planar test): 160 V, 1.1 µA.
    assert slots["3"]["breakdown_voltage"] == 160 and slots["3"]["max_voltage"] == 170
    assert slots["3"]["leakage_current"] == pytest.approx(1.1 * uA)
    assert (slots["3"]["stop_reason"], slots["3"]["verdict"]) == ("done", "pass")
    # slot 5: 1.25 µA/V, compliance at 80 V (see the compliance test); later points are ignored.
    assert (slots["5"]["stop_reason"], slots["5"]["compliance_voltage"]) == ("compliance", 80)
    assert slots["5"]["breakdown_voltage"] == 80 and slots["5"]["max_voltage"] == 80
    assert len(slots["5"]["reasons"]) == 2
    assert json.loads(json.dumps(summary)) == summary


def test_callback_on_a_run_publishes_and_tiled_finds_it(
    RE: RunEngine, stand: Stand, tiled_client: Any
) -> None:
    published: list[tuple[str, dict[str, Any]]] = []
    heard: list[tuple[str, dict[int, SlotResult]]] = []

    def publish(uid: str, metadata: dict[str, Any]) -> None:
        published.append((uid, metadata))
        tiled_client.create_container(key=uid, metadata=metadata)

    analysis = IVAnalysis(publish=publish, on_result=[lambda uid, r: heard.append((uid, r))])
    RE.subscribe(analysis)
    uid = RE(stand.plan(stand.metadata())).run_start_uids[0]
    [(published_uid, summary)] = published
    assert published_uid == uid and analysis.summaries == {uid: summary}
    check_full_run(summary)
    assert sorted(analysis.results) == [3, 5] and analysis.results[3].verdict == "pass"
    assert heard == [(uid, analysis.results)]
    # the searches of the module docstring, on a real Tiled server
    assert uid in tiled_client.search(Key("verdict") == "fail")
    assert uid in tiled_client.search(Contains("analysis.failed", "20UPGM22110005"))
    assert uid not in tiled_client.search(Contains("analysis.failed", "20UPGM22110003"))
    assert uid in tiled_client.search(Key("analysis.slots.5.breakdown_voltage") < 150)
    assert uid not in tiled_client.search(Key("analysis.slots.3.breakdown_voltage") < 150)
    # not an IV run: ignored
    RE(stand.plan(stand.metadata(test="temperature"), stop=10))
    assert len(published) == 1 and list(analysis.summaries) == [uid]


def test_event_pages_give_the_same_results(RE: RunEngine, stand: Stand) -> None:
    documents: list[tuple[str, dict[str, Any]]] = []
    live = IVAnalysis()
    RE.subscribe(live)
    RE.subscribe(lambda name, doc: documents.append((name, doc)))
    uid = RE(stand.plan(stand.metadata())).run_start_uids[0]
    events = [doc for name, doc in documents if name == "event"]
    assert len(events) == 35
    paged = IVAnalysis()
    for name, doc in documents:
        if name != "event":
            paged(name, doc)
        if name == "descriptor":  # pages of 10, 10, 10 and 5 events
            for first in range(0, len(events), 10):
                paged("event_page", pack_event_page(*events[first : first + 10]))
    check_full_run(paged.summaries[uid])
    assert paged.summaries[uid] == live.summaries[uid]


def test_aborted_and_failed_runs_are_analysed_with_a_reason(RE: RunEngine, stand: Stand) -> None:
    analysis = IVAnalysis()
    RE.subscribe(analysis)
    with pytest.raises(RunEngineInterrupted):
        RE(stand.plan(stand.metadata(), stop_at=60))
    uid = RE.abort(reason="operator stopped the scan").run_start_uids[0]
    slots = analysis.summaries[uid]["analysis"]["slots"]
    assert slots["3"]["max_voltage"] == 60 and slots["3"]["stop_reason"] == "error"
    assert slots["3"]["reasons"] == [  # the stored verdict: the official analysis, run problems
        "the run did not complete (exit status 'abort': operator stopped the scan); only the"
        " points measured before it ended were analysed",
        "breakdown at 60 V is below the 120 V cut for L1",  # the tool's "incomplete" rule
        "no leakage current at the operating voltage: the scan ended below it",
    ]
    assert slots["3"]["live_reasons"] == [
        "the run did not complete (exit status 'abort': operator stopped the scan); only the"
        " points measured before it ended were analysed",
        "the scan never reached the 100 V operating voltage: it stopped at 60 V (run interrupted)",
    ]
    assert analysis.summaries[uid]["verdict"] == "fail"
    with pytest.raises(RunEngineInterrupted):
        RE(stand.plan(stand.metadata(), stop_at=60))
    RE.abort()  # no reason given
    assert analysis.results[3].reasons[0] == (
        "the run did not complete (exit status 'abort'); only the points measured before it"
        " ended were analysed"
    )
    with pytest.raises(RuntimeError, match="chiller link lost"):
        RE(stand.plan(stand.metadata(), fail_at=130))
    failed = analysis.results[3]
    assert failed.reasons[0].startswith("the run did not complete (exit status 'fail'")
    assert (failed.leakage_current, failed.max_voltage) == (pytest.approx(1.1 * uA), 130)


def test_a_failing_publisher_does_not_break_the_run(
    RE: RunEngine, stand: Stand, caplog: pytest.LogCaptureFixture
) -> None:
    def publish(uid: str, metadata: dict[str, Any]) -> None:
        raise ConnectionError("tiled is down")

    analysis = IVAnalysis(publish=publish)
    RE.subscribe(analysis)
    with caplog.at_level(logging.ERROR, logger="teststand.callbacks.iv_analysis"):
        result = RE(stand.plan(stand.metadata(), stop=20))
    assert result.exit_status == "success"
    assert "publishing the results failed" in caplog.text and "tiled is down" in caplog.text
    assert (
        "IV analysis: publishing the results failed; the results stay in IVAnalysis.summaries "
        f"(the last {IVAnalysis.SUMMARIES_KEPT} runs)" in [r.getMessage() for r in caplog.records]
    )
    assert analysis.summaries[result.run_start_uids[0]]["verdict"] == "fail"  # 20 V < 100 V


def test_summaries_keep_the_last_runs_only(RE: RunEngine, stand: Stand) -> None:
    """The queue worker's analysis lives for weeks: its summaries must not grow with every run."""
    analysis = IVAnalysis()
    analysis.SUMMARIES_KEPT = 2
    RE.subscribe(analysis)
    uids = [RE(stand.plan(stand.metadata(), stop=20)).run_start_uids[0] for _ in range(3)]
    assert list(analysis.summaries) == uids[1:]
    assert not analysis._runs and not analysis._primary  # nothing else of a run stays behind


def test_a_compliance_stop_no_event_shows_is_read_from_the_current(
    RE: RunEngine, stand: Stand
) -> None:
    # The plans set a slot's stop state after reading its point: when the last slots scanning stop,
    # the run ends without another event. Slot 5 at 80 V: 1.25 µA/V · 80 V = 100 µA ≥ 0.95·100 µA.
    analysis = IVAnalysis()
    RE.subscribe(analysis)
    RE(stand.plan(stand.metadata(), stop=80))
    five, three = analysis.results[5], analysis.results[3]
    assert (five.stop_reason, five.compliance_voltage, five.breakdown_voltage) == (
        "compliance",
        80,
        80,
    )
    assert (three.stop_reason, three.compliance_voltage) == ("done", None)  # 0.9 µA at 80 V
    assert three.reasons == [
        "the scan never reached the 100 V operating voltage: it stopped at 80 V (end of scan)"
    ]


def test_the_run_passes_only_when_every_module_passes() -> None:
    def slot(module: str, verdict: str, live: str) -> dict[str, Any]:
        return {
            "module_id": module,
            "verdict": verdict,
            "live_verdict": live,
            "disagreement": verdict != live,
        }

    passing = summarise({"3": slot("A", "pass", "pass"), "5": slot("B", "pass", "pass")})
    assert (passing["verdict"], passing["analysis"]["live_verdict"]) == ("pass", "pass")
    assert passing["analysis"]["passed"] == ["A", "B"] and passing["analysis"]["disagree"] == []
    mixed = summarise({"3": slot("A", "pass", "fail"), "5": slot("B", "pass", "pass")})
    assert (mixed["verdict"], mixed["analysis"]["live_verdict"]) == ("pass", "fail")
    assert mixed["analysis"]["disagree"] == ["A"]
    failing = summarise({"3": slot("A", "fail", "pass")})
    assert (failing["verdict"], failing["analysis"]["live_verdict"]) == ("fail", "pass")
    assert failing["analysis"]["failed"] == ["A"]
    empty = summarise({})  # a run without modules
    assert (empty["verdict"], empty["analysis"]["live_verdict"]) == ("fail", "fail")


def test_slot_keys_that_are_not_numbers_are_not_analysed(
    stand: Stand, caplog: pytest.LogCaptureFixture
) -> None:
    md = stand.metadata()
    md["slots"] = {"top": md["slots"]["3"]}
    md["iv_keys"] = {"top": md["iv_keys"]["3"]}
    analysis = IVAnalysis()
    with caplog.at_level(logging.WARNING, logger="teststand.callbacks.iv_analysis"):
        analysis("start", {**md, "uid": "run-1", "time": 0.0})
    assert "IV run run-1: slot keys ['top'] are not numbers; not analysed" in [
        record.getMessage() for record in caplog.records
    ]


def test_a_slot_stopped_earlier_in_a_row_leaves_the_next_slots_points(
    RE: RunEngine, stand: Stand
) -> None:
    """Slot 5 listed first: once it is in compliance, slot 3's later points in the same rows are
    still analysed (a `break` instead of a `continue` over the slots lost them)."""
    md = stand.metadata()
    md["iv_keys"] = dict(reversed(list(md["iv_keys"].items())))
    analysis = IVAnalysis()
    RE.subscribe(analysis)
    uid = RE(stand.plan(md)).run_start_uids[0]
    check_full_run(analysis.summaries[uid])
    # the run ends in the row where slot 5 stops: slot 3's point of that row is its last
    uid = RE(stand.plan(md, stop=85)).run_start_uids[0]
    assert analysis.summaries[uid]["analysis"]["slots"]["3"]["max_voltage"] == 85


# --- the reasons' exact words and the boundaries of analyse_slot ---------------------------


def linear(v: float) -> float:
    """0.1 µA + 0.01 µA/V: no breakdown anywhere."""
    return (0.1 + 0.01 * v) * uA


def test_a_3d_module_over_its_leakage_limit_is_named_as_3d() -> None:
    points = curve(range(0, 55, 5), lambda v: 80 * uA)  # 80/12.75 = 6.27 µA/cm² at 25 V
    result = analyse_slot(points, three_d(), SETTINGS, THREE_D, "done")
    assert result.reasons == [
        "leakage current 6.27 µA/cm² at 25 V (20 °C) is above the 5 µA/cm² limit for 3D sensors"
    ]
    assert (result.sensor, result.leakage_limit) == ("3d", 5e-6)


def test_leakage_exactly_at_the_limit_passes() -> None:
    points = curve(range(0, 205, 5), lambda v: 1.5 * uA)  # on 1 cm²: exactly 1.5 µA/cm²
    result = analyse_slot(points, planar(area=1.0), SETTINGS, PLANAR, "done")
    assert result.leakage_current_density == PLANAR.leakage_limit
    assert (result.verdict, result.reasons) == ("pass", [])


def test_the_scans_breakdown_stop_is_the_breakdown_when_the_curve_shows_none() -> None:
    result = analyse_slot(curve(range(0, 115, 5), linear), planar(), SETTINGS, PLANAR, "breakdown")
    assert result.breakdown_voltage == 110 and result.compliance_voltage is None
    assert result.reasons[0] == (
        "breakdown at 110 V (the scan's breakdown stop) is below the 120 V required for planar"
        " sensors"
    )


def test_a_compliance_stop_without_settings_names_no_limit() -> None:
    points = curve(range(0, 85, 5), lambda v: 1.25 * uA * v)
    result = analyse_slot(points, planar(), None, PLANAR, "compliance")
    assert result.reasons[0] == (
        "breakdown at 80 V (current compliance) is below the 120 V required for planar sensors"
    )


def test_a_scan_ending_at_the_threshold_gets_no_note_one_below_it_does() -> None:
    at = analyse_slot(curve(range(0, 125, 5), linear), planar(), SETTINGS, PLANAR, "done")
    assert (at.breakdown_voltage, at.notes, at.verdict) == (None, [], "pass")
    below = analyse_slot(curve(range(0, 119, 3), linear), planar(), SETTINGS, PLANAR, "done")
    assert below.notes == ["no breakdown up to 117 V, but the scan ended below 120 V"]


def test_the_stop_named_when_the_operating_voltage_was_never_reached() -> None:
    short = curve(range(0, 55, 5), linear)
    errored = analyse_slot(short, planar(), SETTINGS, PLANAR, "error")
    assert errored.reasons[-1] == (
        "the scan never reached the 100 V operating voltage: it stopped at 50 V (error)"
    )
    interrupted = analyse_slot(short, planar(), SETTINGS, PLANAR, "error", problems=["lost"])
    assert interrupted.reasons[-1].endswith("it stopped at 50 V (run interrupted)")
    ended = analyse_slot(short, planar(), SETTINGS, PLANAR, "done", problems=["lost"])
    assert ended.reasons == [
        "lost",
        "the scan never reached the 100 V operating voltage: it stopped at 50 V (end of scan)",
    ]


def test_a_missing_temperature_on_either_side_of_the_operating_voltage_is_noted() -> None:
    for missing in (95, 105):  # the operating voltage (100 V) lies between these two points
        points = [IVPoint(v, linear(v), None if v == missing else 20.0) for v in range(5, 215, 10)]
        result = analyse_slot(points, planar(), SETTINGS, PLANAR, "done")
        assert result.notes == ["no module temperature at 100 V: assumed 20 °C, not normalised"]
        assert result.temperature is None and result.leakage_current == pytest.approx(linear(100))


def test_each_slots_result_is_logged_with_its_run_and_slot(
    RE: RunEngine, stand: Stand, caplog: pytest.LogCaptureFixture
) -> None:
    analysis = IVAnalysis()
    RE.subscribe(analysis)
    with caplog.at_level(logging.INFO, logger="teststand.callbacks.iv_analysis"):
        uid = RE(stand.plan(stand.metadata(), stop=20)).run_start_uids[0]
    logged = {r.getMessage() for r in caplog.records if r.getMessage().startswith("IV run")}
    assert logged == {
        f"IV run {uid}, slot {slot}: {result.verdict} {result.reasons}"
        for slot, result in analysis.results.items()
    }


def test_a_stop_no_event_showed_is_compliance_from_095_of_the_limit() -> None:
    limit = SETTINGS.compliance
    assert unseen_stop([IVPoint(80, 0.95 * limit)], SETTINGS) == "compliance"
    assert unseen_stop([IVPoint(80, 0.94 * limit)], SETTINGS) == "done"
    assert unseen_stop([], SETTINGS) == "done" and unseen_stop([], SETTINGS, True) == "error"
    assert unseen_stop([IVPoint(80, limit)], None) == "done"


def test_voltages_in_the_reasons_keep_two_decimals() -> None:
    points = [*curve(range(0, 55, 5), linear), IVPoint(57.126, linear(57.126), 20.0)]
    result = analyse_slot(points, planar(), SETTINGS, PLANAR, "done")
    assert result.reasons[-1].endswith("it stopped at 57.13 V (end of scan)")


def test_a_run_the_official_tool_cannot_judge_says_why_naming_run_slot_and_module(
    RE: RunEngine, stand: Stand
) -> None:
    analysis = IVAnalysis()
    RE.subscribe(analysis)
    uid = RE(stand.plan(stand.metadata(), stop=0)).run_start_uids[0]  # one point per slot
    official = analysis.summaries[uid]["analysis"]["slots"]["3"]["official"]
    assert (official["verdict"], official["layer"]) == (None, "L1")
    assert official["reasons"] == [
        f"IV run {uid} (slot 3, module 20UPGM22110003) has 1 valid IV point(s); the official"
        " IV_MEASURE analysis needs at least 2 for an L1 module (it refuses a measurement of one"
        " point or none): measure the IV again"
    ]
    assert official["rules"] == analysis.itk.model_dump(exclude={"institution"})


def test_a_3d_module_without_a_layer_is_judged_as_l0() -> None:
    points = curve(range(0, 55, 5), linear)
    official = IVAnalysis()._official("uid", "1", three_d(), points)
    assert (official["layer"], official["verdict"]) == ("L0", "pass")


def test_a_slot_without_iv_keys_fails_and_a_compliance_stop_names_the_limit(
    RE: RunEngine, stand: Stand
) -> None:
    md = stand.metadata()
    del md["iv_keys"]["3"]  # slot 3's data keys lost from the start document
    analysis = IVAnalysis()
    RE.subscribe(analysis)
    uid = RE(stand.plan(md, stop=100)).run_start_uids[0]
    assert analysis.summaries[uid]["verdict"] == "fail"
    assert analysis.results[3].reasons[0] == "the run has no IV data keys for slot 3"
    assert analysis.results[5].reasons[0] == (
        "breakdown at 80 V (current compliance of 100 µA) is below the 120 V required for planar"
        " sensors"
    )
