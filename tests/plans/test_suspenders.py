"""Coldbox suspenders on the simulated stand: a running plan is suspended with HV at 0 V while
the box is unsafe (lid, humidity, dry air) and resumes, HV back up, once it is safe again."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest
from bluesky import RunEngine
from bluesky.suspenders import SuspenderBase
from helpers import run

from teststand.plans.iv import iv_scan
from teststand.plans.stability import long_term_stability
from teststand.plans.suspenders import install_suspenders, stand_suspenders
from teststand.plans.temperature import set_temperature
from teststand.sim.coldbox import ColdBox as SimColdBox
from teststand.stand import TestStand

SLOTS = [1, 2, 3]
VOLTAGE = 50.0


def vmon(stand: TestStand) -> list[float]:
    assert stand.simulators is not None
    channels = stand.simulators["hv"].instrument.snapshot()["channels"]  # type: ignore[attr-defined]
    return [abs(channels[stand.config.slots[n].hv.channel]["vmon"]) for n in SLOTS]


def box(stand: TestStand) -> SimColdBox:
    assert stand.simulators is not None
    return cast(SimColdBox, stand.simulators["coldbox"].instrument)


@pytest.fixture
def installed(RE: RunEngine) -> Iterator[Callable[..., list[SuspenderBase]]]:
    """`installed(stand)` installs the stand's suspenders; removed (polling stopped) after."""

    def install(stand: TestStand) -> list[SuspenderBase]:
        return install_suspenders(RE, stand, sleep=0.2, period=0.05)

    yield install
    RE.clear_suspenders()


def test_the_suspenders_of_a_stand(stand: TestStand) -> None:
    suspenders = stand_suspenders(stand, sleep=30.0)
    watched = [
        "PolledSignal('coldbox-dew_point_margin')",
        "PolledSignal('coldbox-lid_closed_and_interlock_ok')",
        "PolledSignal('coldbox-dry_air_flow_lost')",
    ]
    assert all(name in repr(s) for name, s in zip(watched, suspenders, strict=True))
    dew = repr(suspenders[0])
    assert "SuspendFloor" in dew and "sleep=30.0" in dew
    assert "less than 5 K above the dew point" in dew and "back above 6 K" in dew
    assert all("HV of slots 1-8 ramped to 0 V" in repr(s) for s in suspenders)
    assert "HV of slots 2,4-5 ramped" in repr(stand_suspenders(stand, [2, 4, 5])[1])


def third_point(doc: dict[str, Any]) -> bool:
    return bool(doc["seq_num"] == 3)


class Operator(threading.Thread):
    """Makes the box unsafe at the first event `when(event)` holds, waits until the plan is
    suspended with HV at 0 V, notes what it saw, and makes the box safe again."""

    def __init__(
        self,
        stand: TestStand,
        suspenders: list[SuspenderBase],
        spoil: Callable[[], None],
        fix: Callable[[], None],
        when: Callable[[dict[str, Any]], bool] = third_point,
        held: Callable[[], bool] = lambda: True,
    ) -> None:
        super().__init__()
        self.stand, self.suspenders, self.spoil, self.fix = stand, suspenders, spoil, fix
        self.when = when
        self.held = held  # what the suspension's hold must have done before the notes are taken
        self.triggered = threading.Event()
        self.seen: dict[str, Any] = {}

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        primary = {"thermal-phase", "lts-slot1_state", "iv-slot1_state"} & set(doc.get("data", ()))
        if name == "event" and primary and self.when(doc):
            self.triggered.set()

    def run(self) -> None:
        assert self.stand.simulators is not None
        sim = self.stand.simulators["coldbox"]
        if not self.triggered.wait(20):
            return
        self.seen["before"] = vmon(self.stand)
        sim.host.call(self.spoil)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            tripped = [s.tripped for s in self.suspenders]
            if any(tripped) and max(vmon(self.stand)) < 2 and self.held():
                self.seen["tripped"] = tripped
                self.seen["suspended"] = vmon(self.stand)
                self.seen["box"] = box(self.stand).snapshot()
                break
            time.sleep(0.02)
        sim.host.call(self.fix)


@pytest.mark.parametrize(
    ("speed", "dry_air", "spoil", "fix", "tripped", "message"),
    [
        (200.0, False, "open_lid", "close_lid", 1, "the coldbox lid is open or its interlock"),
        (200.0, True, "flow_failure", "flow_back", 2, "dry air is on but its flow is below 1"),
        (2000.0, False, "humid", "dry", 0, "less than 5 K above the dew point"),
    ],
)
def test_unsafe_box_suspends_the_plan_with_hv_at_zero_until_safe_again(
    RE: RunEngine,
    make_stand: Callable[..., TestStand],
    installed: Callable[..., list[SuspenderBase]],
    capsys: pytest.CaptureFixture[str],
    speed: float,
    dry_air: bool,
    spoil: str,
    fix: str,
    tripped: int,
    message: str,
) -> None:
    stand = make_stand(speed)
    sim = box(stand)
    actions = {
        "open_lid": sim.open_lid,
        "close_lid": sim.close_lid,
        "flow_failure": lambda: sim.set_flow_failure(True),
        "flow_back": lambda: sim.set_flow_failure(False),
        "humid": lambda: sim.set_ambient_dew_point(30.0),  # the box air saturates at 20 °C
        "dry": lambda: sim.set_ambient_dew_point(-10.0),
    }
    if dry_air:
        run(RE, lambda: stand.coldbox.dry_air.set(True))  # type: ignore[attr-defined]
    suspenders = installed(stand)
    operator = Operator(stand, suspenders, actions[spoil], actions[fix])
    events: list[dict[str, Any]] = []
    RE.subscribe(operator)
    RE.subscribe(lambda name, doc: events.append(doc) if name == "event" else None)
    operator.start()
    RE(long_term_stability(stand, SLOTS, voltage=VOLTAGE, duration=3.0, interval=0.1))
    operator.join()

    assert operator.seen["before"] == [pytest.approx(VOLTAGE, abs=2)] * 3
    assert operator.seen["tripped"][tripped], operator.seen
    assert operator.seen["suspended"] == [pytest.approx(0, abs=2)] * 3
    output = capsys.readouterr().out
    assert "Suspending" in output and message in output
    assert "HV of slots 1-8 ramped to 0 V" in output
    primary = [e for e in events if "lts-slot1_state" in e["data"]]
    assert len({e["seq_num"] for e in primary}) == 31  # every point, after the rewind too
    bias = stand.slots[1].bias.name
    assert primary[-1]["data"][bias] == pytest.approx(VOLTAGE, abs=2)  # HV came back
    assert all(e["data"]["lts-slot1_state"] == "measuring" for e in primary)
    assert max(vmon(stand)) < 2
    assert not any(s.tripped for s in suspenders)


def test_humid_box_suspends_an_iv_scan_which_then_completes(
    RE: RunEngine,
    make_stand: Callable[..., TestStand],
    installed: Callable[..., list[SuspenderBase]],
) -> None:
    stand = make_stand(2000.0)
    sim = box(stand)
    suspenders = installed(stand)
    operator = Operator(
        stand,
        suspenders,
        lambda: sim.set_ambient_dew_point(30.0),
        lambda: sim.set_ambient_dew_point(-10.0),
    )
    events: list[dict[str, Any]] = []
    RE.subscribe(operator)
    RE.subscribe(lambda name, doc: events.append(doc) if name == "event" else None)
    operator.start()
    RE(iv_scan(stand, SLOTS, 0, 60, 5, settle=0.05))
    operator.join()

    assert min(operator.seen["before"]) > 5  # suspended mid-scan with HV up
    assert operator.seen["tripped"][0] and max(operator.seen["suspended"]) < 2
    primary = [e for e in events if "iv-slot1_state" in e["data"]]
    assert sorted({e["data"]["iv_voltage"] for e in primary}) == list(range(0, 65, 5))
    assert all(e["data"]["iv-slot1_state"] == "measuring" for e in primary)
    assert primary[-1]["data"][stand.slots[1].bias.name] == pytest.approx(60, abs=2)
    assert max(vmon(stand)) < 2


def test_suspended_cooling_moves_to_its_target_again(
    RE: RunEngine,
    make_stand: Callable[..., TestStand],
    installed: Callable[..., list[SuspenderBase]],
) -> None:
    stand = make_stand(500.0)
    stand.coldbox.movable_logic.poll = 0.05  # type: ignore[attr-defined]
    sim = box(stand)
    suspenders = installed(stand)

    def mid_move(doc: dict[str, Any]) -> bool:
        data = doc["data"]
        # early in the move (from 20 °C to -20 °C): the suspension must take hold before the
        # box arrives, and moves now end as soon as a fresh read shows them settled
        return bool(data["thermal-phase"] == "move" and data["coldbox"] < 18.0)

    def spoil() -> None:
        # Simulated time slows while the suspension takes hold, so that a loaded machine's
        # latency cannot let the box reach its target first; it speeds up again once fixed.
        sim.clock.speed = 5.0
        sim.set_flow_failure(True)

    def fix() -> None:
        sim.set_flow_failure(False)
        sim.clock.speed = 500.0

    def holding() -> bool:  # the suspension stopped the coldbox: its set point left -20 °C
        return bool(sim.snapshot()["setpoints"][0] != -20.0)

    operator = Operator(stand, suspenders, spoil, fix, when=mid_move, held=holding)
    events: list[dict[str, Any]] = []
    RE.subscribe(operator)
    RE.subscribe(
        lambda name, doc: (
            events.append(doc["data"])
            if name == "event" and "thermal-phase" in doc["data"]
            else None
        )
    )
    operator.start()
    RE(set_temperature(stand, -20.0, tolerance=1.0, settle=0.2, interval=0.1))
    operator.join()

    assert operator.seen["tripped"] == [False, False, True]
    held = operator.seen["box"]["setpoints"][0]
    assert held > -19.0  # suspended mid-move: the coldbox held its temperature of the moment
    moves = [e for e in events if e["thermal-phase"] == "move"]
    assert min(e["coldbox"] for e in moves) < held - 1  # and cooled on after resuming
    assert events[-1]["thermal-phase"] == "reached"
    assert events[-1]["coldbox"] == pytest.approx(-20.0, abs=1.0)
    assert sim.snapshot()["setpoints"] == [-20.0] * 8
