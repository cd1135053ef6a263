"""Module qualification on the simulated stand: order, linked runs, safe end, refusals."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from bluesky import RunEngine

from teststand.plans import PlanArgumentError, StandNotReady, module_qualification
from teststand.stand import TestStand

SPEED = 500.0
FAST = {"settle": 1 / SPEED, "temperature_settle": 0.1, "interval": 0.1, "dwell": 0.2}


def lv_outputs(stand: TestStand) -> list[tuple[bool, float]]:
    """(armed, volts at the terminals) of every LV channel of the stand."""
    assert stand.simulators is not None
    found = []
    for name in ("lv1", "lv2"):
        snapshot = stand.simulators[name].instrument.snapshot()  # type: ignore[attr-defined]
        found += [(ch["armed"], ch["output"][0]) for ch in snapshot["channels"]]
    return found


def test_qualification_runs_in_power_order(
    RE: RunEngine, make_stand: Callable[..., TestStand]
) -> None:
    stand = make_stand(speed=SPEED)
    starts: list[dict[str, Any]] = []
    lv_at_iv: list[list[tuple[bool, float]]] = []

    def watch(name: str, doc: dict[str, Any]) -> None:
        if name == "start":
            starts.append(doc)
            if doc["test"] == "iv":
                lv_at_iv.append(lv_outputs(stand))

    RE.subscribe(watch)
    result = RE(module_qualification(stand, [1, 4], cold=-20.0, cycles=1, **FAST)).plan_result
    tests = [(doc["test"], doc["stage"]) for doc in starts]
    assert tests == [
        ("temperature", "INITIAL_WARM"),
        ("iv", "INITIAL_WARM"),  # planar slot 1: 5 V steps to 200 V
        ("iv", "INITIAL_WARM"),  # 3D slot 4: 1 V steps to 100 V
        ("temperature", "INITIAL_COLD"),
        ("iv", "INITIAL_COLD"),
        ("iv", "INITIAL_COLD"),
        ("thermal_cycle", "THERMAL_CYCLES"),
        ("iv", "FINAL_WARM"),
        ("iv", "FINAL_WARM"),
        ("hv_off", "TEST"),
    ]
    assert {doc["qualification_uid"] for doc in starts} == {result["qualification_uid"]}
    ivs = [doc for doc in starts if doc["test"] == "iv"]
    assert [doc["iv"]["step"] for doc in ivs[:2]] == [5.0, 1.0]
    assert [doc["iv"]["stop"] for doc in ivs[:2]] == [200.0, 100.0]
    assert {doc["uid"] for doc in ivs} == {
        uid for key in ("warm_iv", "cold_iv", "final_iv") for uid in result["runs"][key]
    }
    # LV was on (slots 1 and 4: lv1 channels 1 and 4) during every IV, and is off at the end
    for outputs in lv_at_iv:
        assert outputs[0][0] and outputs[3][0] and outputs[0][1] == pytest.approx(1.8, abs=0.05)
    assert not any(armed for armed, _ in lv_outputs(stand))
    assert stand.simulators is not None
    channels = stand.simulators["hv"].instrument.snapshot()["channels"]  # type: ignore[attr-defined]
    assert all(abs(ch["vmon"]) < 2 and not ch["on"] for ch in channels)


def test_open_lid_refused_before_anything_moves(
    RE: RunEngine, make_stand: Callable[..., TestStand]
) -> None:
    stand = make_stand(speed=SPEED)
    assert stand.simulators is not None
    box = stand.simulators["coldbox"]
    box.host.call(box.instrument.open_lid)  # type: ignore[attr-defined]
    with pytest.raises(StandNotReady, match="lid is open"):
        RE(module_qualification(stand, [1], cycles=0, **FAST))
    # the safe-state cleanup only wrote 0 V; nothing was switched on
    channels = stand.simulators["hv"].instrument.snapshot()["channels"]  # type: ignore[attr-defined]
    assert not any(ch["on"] or ch["vset"] for ch in channels)
    assert not any(armed for armed, _ in lv_outputs(stand))


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"stage": "INITIAL_COLD"}, "warm stage"),
        ({"cold": -60.0}, "outside"),
        ({"cold": 30.0}, "below warm"),
        ({"cycles": -1}, "0 or more"),
        ({"lv_voltage": 50.0}, "HMP4040"),
        ({"slots": [9]}, "unknown slot"),
    ],
)
def test_bad_arguments_refused(
    RE: RunEngine, stand: TestStand, arguments: dict[str, Any], message: str
) -> None:
    assert stand.simulators is not None
    before = {name: sim.server.commands for name, sim in stand.simulators.sims.items()}
    with pytest.raises(PlanArgumentError, match=message):
        RE(module_qualification(stand, **{"slots": [1], **arguments}))
    assert {name: sim.server.commands for name, sim in stand.simulators.sims.items()} == before
