"""Long-term stability on the simulated stand: points at bias, compliance, 0 V on every exit."""

from __future__ import annotations

import itertools
import statistics
import threading
from typing import Any

import pytest
from bluesky import RunEngine
from bluesky.utils import RunEngineInterrupted

from teststand.plans.common import PlanArgumentError
from teststand.plans.stability import long_term_stability
from teststand.stand import TestStand


class Documents:
    def __init__(self) -> None:
        self.docs: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        self.docs.append((name, doc))

    def of(self, name: str) -> list[dict[str, Any]]:
        return [doc for n, doc in self.docs if n == name]

    def primary(self) -> list[dict[str, Any]]:
        descriptors = {d["uid"] for d in self.of("descriptor") if d["name"] == "primary"}
        return [e for e in self.of("event") if e["descriptor"] in descriptors]


@pytest.fixture
def docs(RE: RunEngine) -> Documents:
    collected = Documents()
    RE.subscribe(collected)
    return collected


def vmon(stand: TestStand) -> dict[int, float]:
    """Each slot's HV as the simulator has it."""
    assert stand.simulators is not None
    channels = stand.simulators["hv"].instrument.snapshot()["channels"]  # type: ignore[attr-defined]
    return {n: abs(channels[slot.hv.channel]["vmon"]) for n, slot in stand.config.slots.items()}


def test_points_at_operating_voltage_and_a_compliance_stop(
    RE: RunEngine, stand: TestStand, docs: Documents
) -> None:
    plan = long_term_stability(stand, [1, 4, 6], duration=1.0, interval=0.1, compliance=20e-6)
    uid = RE(plan).plan_result
    start = docs.of("start")[0]
    assert start["uid"] == uid and start["test"] == "long_term_stability"
    settings = start["long_term_stability"]
    assert settings["voltages"] == {"1": 100.0, "4": 25.0, "6": 100.0}  # planar, 3D, planar
    assert settings["points"] == 11 and settings["state_keys"]["6"] == "lts-slot6_state"
    assert docs.of("stop")[0]["exit_status"] == "success"

    events = docs.primary()
    assert len(events) == 11
    times = [e["time"] for e in events]
    assert times[-1] - times[0] >= 0.95  # ten intervals of 0.1 s
    # the cadence is kept by the reads' starts; an event's time is its save, after the read, so
    # one slow read (a loaded machine) brings the next event closer: judge the median spacing
    spacing = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert all(gap > 0 for gap in spacing) and statistics.median(spacing) >= 0.08, spacing
    bias = {n: stand.slots[n].bias.name for n in (1, 4, 6)}
    for event in events:
        data = event["data"]
        for key in ("leakage_current", "lv_voltage", "lv_current", "temperature"):
            assert f"slot1-{key}" in data
        assert data["slot1-temperature"] == pytest.approx(20.0, abs=0.5)
        assert data[bias[1]] == pytest.approx(100.0, abs=2)
        assert data[bias[4]] == pytest.approx(25.0, abs=2)
        assert data["lts-slot1_state"] == data["lts-slot4_state"] == "measuring"
        assert 0 < data["slot1-leakage_current"] < 20e-6
    # slot 6 leaks 30 µA: measured once, then stopped and ramped down
    states = [e["data"]["lts-slot6_state"] for e in events]
    assert states[0] == "measuring" and set(states[1:]) == {"compliance"}
    assert events[0]["data"]["slot6-leakage_current"] >= 0.95 * 20e-6
    assert events[-1]["data"][bias[6]] < 2
    assert all(v < 2 for v in vmon(stand).values())


def test_paused_then_aborted_run_ends_at_zero(
    RE: RunEngine, stand: TestStand, docs: Documents
) -> None:
    def pause_at_third_point(name: str, doc: dict[str, Any]) -> None:
        if name == "event" and doc["seq_num"] == 3:  # as a GUI or the queue server would
            threading.Thread(target=RE.request_pause).start()

    RE.subscribe(pause_at_third_point)
    with pytest.raises(RunEngineInterrupted):
        RE(long_term_stability(stand, [2, 3], voltage=60.0, duration=5.0, interval=0.1))
    assert RE.state == "paused"
    assert vmon(stand)[2] == pytest.approx(60.0, abs=2)  # a pause alone leaves the bias
    RE.abort("operator abort")
    assert docs.of("stop")[0]["exit_status"] == "abort"
    assert len(docs.primary()) < 40  # of 50: aborted well before its end, however late
    assert all(v < 2 for v in vmon(stand).values())


def test_failing_plan_ends_at_zero(RE: RunEngine, stand: TestStand, docs: Documents) -> None:
    class Broken(Exception):
        pass

    def fail_at_second_point(name: str, doc: dict[str, Any]) -> None:
        if name == "event" and doc["seq_num"] == 2:
            raise Broken("a callback gave up")

    RE.subscribe(fail_at_second_point)
    with pytest.raises(Broken):
        RE(long_term_stability(stand, [5], voltage=80.0, duration=5.0, interval=0.1))
    assert docs.of("stop")[0]["exit_status"] == "fail"
    assert all(v < 2 for v in vmon(stand).values())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"slots": [4], "voltage": 150.0}, r"slot 4: 150.0 V is above its 120 V limit"),
        ({"slots": [1], "voltage": -50.0}, r"give bias voltages as magnitudes"),
        ({"slots": [1], "duration": 0.0}, r"duration 0.0 s"),
        ({"slots": [1], "interval": -1.0}, r"interval -1.0 s"),
        ({"slots": [1], "compliance": 1e-3}, r"compliance 0.001 A"),
        ({"slots": [9]}, r"unknown slot"),
    ],
)
def test_bad_arguments_refused_before_any_message(
    RE: RunEngine, stand: TestStand, docs: Documents, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(PlanArgumentError, match=message):
        RE(long_term_stability(stand, **kwargs))
    assert docs.docs == []
