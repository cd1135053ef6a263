"""Coldbox temperature plans on the simulated stand: the dew-point rule, steps and cycles."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any, cast

import pytest
from bluesky import RunEngine
from helpers import stand_dict

from teststand.plans.common import PlanArgumentError, read_now
from teststand.plans.hv import hv_ramp
from teststand.plans.temperature import DewPointError, set_temperature
from teststand.plans.thermal import thermal_cycle
from teststand.sim.coldbox import ColdBox as SimColdBox
from teststand.stand import TestStand

FAST = {"tolerance": 1.0, "settle": 0.2, "interval": 0.1}
MARGIN = 5.0  # limits.dew_point_margin of profile_collection/stand.yaml


class Documents:
    def __init__(self) -> None:
        self.docs: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        self.docs.append((name, doc))

    def of(self, name: str) -> list[dict[str, Any]]:
        return [doc for n, doc in self.docs if n == name]

    def primary(self) -> list[dict[str, Any]]:
        descriptors = {d["uid"] for d in self.of("descriptor") if d["name"] == "primary"}
        return [e["data"] for e in self.of("event") if e["descriptor"] in descriptors]


@pytest.fixture
def docs(RE: RunEngine) -> Documents:
    collected = Documents()
    RE.subscribe(collected)
    return collected


def box(stand: TestStand) -> SimColdBox:
    assert stand.simulators is not None
    return cast(SimColdBox, stand.simulators["coldbox"].instrument)


def control(stand: TestStand, action: Callable[[], None]) -> None:
    """Change the simulated box on the simulators' own loop."""
    assert stand.simulators is not None
    stand.simulators["coldbox"].host.call(action)


def chiller_state(stand: TestStand) -> dict[str, Any]:
    assert stand.simulators is not None
    return stand.simulators["chiller"].instrument.snapshot()  # type: ignore[attr-defined,no-any-return]


@pytest.fixture
def fast(make_stand: Callable[..., TestStand]) -> Callable[..., TestStand]:
    """A stand at 500x whose coldbox checks its settling every 50 ms."""

    def make(**changes: Any) -> TestStand:
        stand = make_stand(500.0, **changes)
        stand.coldbox.movable_logic.poll = 0.05  # type: ignore[attr-defined]
        return stand

    return make


def test_cooling_flushes_first_then_reaches_the_target(
    RE: RunEngine, fast: Callable[..., TestStand], docs: Documents
) -> None:
    stand = fast()
    uid = RE(set_temperature(stand, -30.0, stage="INITIAL_COLD", **FAST)).plan_result
    start = docs.of("start")[0]
    assert start["uid"] == uid
    assert (start["test"], start["stage"]) == ("temperature", "INITIAL_COLD")
    assert len(start["module_ids"]) == 8
    assert start["temperature"]["target"] == -30.0
    assert docs.of("stop")[0]["exit_status"] == "success"

    events = docs.primary()
    phases = [e["thermal-phase"] for e in events]
    first_move = phases.index("move")
    assert phases[0] == "flush" and first_move >= 2  # the box started humid: it was flushed
    for e in events[:first_move]:
        assert e["coldbox-setpoint"] == 20.0 and e["coldbox-tec_power"] is False
        assert e["coldbox-dry_air"] is True
    assert events[0]["coldbox-dew_point"] > 0
    flushed = events[first_move - 1]
    assert flushed["coldbox-dew_point"] + MARGIN <= -30.0
    assert phases[-1] == "reached"
    assert events[-1]["coldbox"] == pytest.approx(-30.0, abs=1.0)
    assert events[-1]["slot3-temperature"] == pytest.approx(-30.0, abs=1.0)
    # target + chiller_offset, or, when the flush stopped at flush_rh with the dew point too
    # high for that, no colder than the flushed dew point + the margin (the IOC's rule)
    floor = math.ceil((flushed["coldbox-dew_point"] + MARGIN) * 100) / 100
    assert events[-1]["chiller-setpoint"] == pytest.approx(max(-40.0, floor), abs=0.011)
    assert min(e["coldbox"] for e in events) > -31.5  # no undershoot past the tolerance

    state = box(stand).snapshot()
    assert state["setpoints"] == [-30.0] * 8  # the reached set point is kept, not the present T
    assert all(state["power"]) and state["valve0"]
    assert all(t == pytest.approx(-30.0, abs=1.0) for t in state["plates"])
    assert state["dew_point"] + MARGIN < min(state["plates"])
    assert chiller_state(stand)["running"]


def test_warming_needs_no_flush(
    RE: RunEngine, fast: Callable[..., TestStand], docs: Documents
) -> None:
    stand = fast()
    control(stand, lambda: box(stand).set_ambient_dew_point(18.0))  # humid, but we warm up
    RE(set_temperature(stand, 30.0, flush_timeout=0.1, **FAST))
    phases = [e["thermal-phase"] for e in docs.primary()]
    assert "flush" not in phases and phases[-1] == "reached"
    assert box(stand).snapshot()["valve0"]  # dry air stays on
    assert box(stand).snapshot()["plates"][0] == pytest.approx(30.0, abs=1.0)


def test_target_below_dew_point_refused_with_no_set_point_moved(
    RE: RunEngine, fast: Callable[..., TestStand], docs: Documents
) -> None:
    stand = fast()
    humid = box(stand)
    control(stand, lambda: humid.set_ambient_dew_point(15.0))
    control(stand, lambda: humid.set_flow_failure(True))  # the flush cannot dry the box
    before = humid.snapshot()
    with pytest.raises(DewPointError, match=r"-10.0 °C refused: after 0.5 s of flushing"):
        RE(set_temperature(stand, -10.0, flush_timeout=0.5, **FAST))
    after = humid.snapshot()
    assert after["setpoints"] == before["setpoints"] == [20.0] * 8
    assert after["power"] == [False] * 8
    assert chiller_state(stand)["setpoint"] == 20.0 and not chiller_state(stand)["running"]
    stop = docs.of("stop")[0]
    assert stop["exit_status"] == "fail" and "dew-point margin" in stop["reason"]
    assert all(e["thermal-phase"] == "flush" for e in docs.primary())


def test_a_warm_step_flushes_first_when_its_chiller_set_point_would_break_the_margin(
    RE: RunEngine, fast: Callable[..., TestStand], docs: Documents
) -> None:
    """22 °C with the chiller 10 K below: the box at a 9 °C dew point keeps the plates safe, but
    a 12 °C bath would break the 5 K margin, which the chiller's own check refuses: the step
    flushes the box until the bath may go there, then moves (the demo failed here once the
    stand got faster than the box dried)."""
    stand = fast()
    humid = box(stand)
    control(stand, lambda: humid.set_ambient_dew_point(9.0))
    RE(set_temperature(stand, 22.0, **FAST))
    assert chiller_state(stand)["setpoint"] == 12.0 and chiller_state(stand)["running"]
    phases = [e["thermal-phase"] for e in docs.primary()]
    assert phases[0] == "flush" and "move" in phases


def test_a_bath_the_flushed_box_cannot_allow_stays_above_the_dew_point_rule(
    RE: RunEngine, fast: Callable[..., TestStand], docs: Documents
) -> None:
    """Dry air at a -42 °C dew point: -30 °C plates are allowed, a -40 °C bath (10 K below)
    is not; the bath goes no colder than the flushed dew point + the margin and the step ends
    at its target (the IOC would refuse the colder bath)."""
    poor = stand_dict()["instruments"]
    poor["coldbox"]["simulator"] = {"options": {"dry_air_dew_point": -42.0}}
    stand = fast(instruments=poor)
    RE(set_temperature(stand, -30.0, flush_rh=1.0, flush_timeout=20.0, **FAST))
    events = docs.primary()
    flushed = [e for e in events if e["thermal-phase"] == "flush"][-1]
    floor = math.ceil((flushed["coldbox-dew_point"] + MARGIN) * 100) / 100
    assert -40.0 < floor <= -30.0
    assert chiller_state(stand)["setpoint"] == pytest.approx(floor, abs=0.011)
    assert events[-1]["coldbox"] == pytest.approx(-30.0, abs=1.0)


def test_flushed_box_too_humid_for_the_target_is_refused(
    RE: RunEngine, fast: Callable[..., TestStand]
) -> None:
    poor = stand_dict()["instruments"]
    poor["coldbox"]["simulator"] = {"options": {"dry_air_dew_point": -20.0}}
    stand = fast(instruments=poor)
    with pytest.raises(DewPointError, match=r"flushed to .* %RH .* at least -1[34] °C"):
        RE(set_temperature(stand, -25.0, flush_rh=6.0, flush_timeout=10.0, **FAST))
    assert box(stand).snapshot()["setpoints"] == [20.0] * 8


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target": -50.0}, r"target -50.0 °C is outside -40..40 °C"),
        ({"target": 45.0}, r"outside -40..40 °C, the stand's limits.temperature \(-45..40"),
        ({"target": math.nan}, r"target nan °C is outside"),
        ({"target": -20.0, "tolerance": 0.0}, r"tolerance 0.0: give a number > 0"),
        ({"target": -20.0, "flush_rh": 100.0}, r"flush_rh 100.0 %"),
        ({"target": -20.0, "settle": -1.0}, r"settle -1.0 s"),
    ],
)
def test_bad_arguments_refused_before_any_message(
    RE: RunEngine, stand: TestStand, docs: Documents, kwargs: dict[str, Any], message: str
) -> None:
    before = box(stand).snapshot()
    with pytest.raises(PlanArgumentError, match=message):
        RE(set_temperature(stand, **kwargs))
    assert docs.docs == []
    assert box(stand).snapshot()["valve0"] == before["valve0"] is False


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 0}, r"n 0: give the number of cycles"),
        ({"n": 2.5}, r"n 2.5"),
        ({"low": 20.0, "high": 20.0}, r"low 20.0 °C must be below high 20.0 °C"),
        ({"low": -44.0}, r"low -44.0 °C is outside -40..40 °C"),
        ({"end": 41.0}, r"end 41.0 °C is outside"),
        ({"dwell": -1.0}, r"dwell -1.0 s"),
    ],
)
def test_bad_cycles_refused_before_any_message(
    RE: RunEngine, stand: TestStand, docs: Documents, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(PlanArgumentError, match=message):
        RE(thermal_cycle(stand, **kwargs))
    assert docs.docs == []


def hv(stand: TestStand) -> list[float]:
    assert stand.simulators is not None
    snapshot = stand.simulators["hv"].instrument.snapshot()  # type: ignore[attr-defined]
    return [abs(channel["vmon"]) for channel in snapshot["channels"]]


def test_thermal_cycles_hold_hv_at_zero_and_dwell_at_both_ends(
    RE: RunEngine, fast: Callable[..., TestStand], docs: Documents
) -> None:
    stand = fast()
    RE(hv_ramp(stand, [1, 2], 40.0, rate=50.0))
    assert hv(stand)[:2] == [pytest.approx(40.0, abs=2)] * 2
    docs.docs.clear()

    RE(thermal_cycle(stand, 2, -30.0, 10.0, 0.3, end=20.0, **FAST))
    start = docs.of("start")[0]
    assert start["test"] == "thermal_cycle" and start["thermal_cycle"]["n"] == 2
    assert docs.of("stop")[0]["exit_status"] == "success"
    events = docs.primary()
    assert all(e[stand.slots[n].bias.name] < 2.0 for e in events for n in (1, 2))
    assert max(hv(stand)) < 2.0
    for cycle in (1, 2):
        for target in (-30.0, 10.0):
            dwelt = [
                e
                for e in events
                if (e["thermal-cycle"], e["thermal-phase"], e["thermal-target"])
                == (cycle, "dwell", target)
            ]
            assert len(dwelt) >= 2  # 0.3 s at one reading per 0.1 s (fewer on a loaded machine)
            assert all(e["coldbox"] == pytest.approx(target, abs=1.0) for e in dwelt)
    # every step towards -30 °C began in a box dry enough for it
    starts = [
        before
        for before, after in itertools.pairwise(events)
        if (after["thermal-phase"], after["thermal-target"]) == ("move", -30.0)
        and before["thermal-phase"] != "move"
    ]
    assert len(starts) == 2
    assert all(before["coldbox-dew_point"] + MARGIN <= -30.0 for before in starts)
    assert events[-1]["thermal-phase"] == "reached"
    assert events[-1]["coldbox"] == pytest.approx(20.0, abs=1.0)
    assert box(stand).snapshot()["setpoints"] == [20.0] * 8


def test_read_now_reads_again_when_a_rewind_swallowed_the_reading(stand: TestStand) -> None:
    plan = read_now(stand.coldbox)
    assert next(plan).command == "read"
    assert plan.send(None).command == "read"  # bluesky's answer to an interrupted message
    reading = {"coldbox": {"value": 20.0, "timestamp": 0.0}}
    with pytest.raises(StopIteration) as done:
        plan.send(reading)
    assert done.value.value == reading
