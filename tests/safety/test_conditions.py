"""The interlock conditions on hand-made snapshots (a pure function: no instruments)."""

from __future__ import annotations

import pytest
from helpers import stand_dict

from teststand.config import load_stand
from teststand.devices.coldbox.protocol import Status
from teststand.safety.clock import LiveClock
from teststand.safety.conditions import Confirmation, environment
from teststand.safety.readings import ChillerReading, Snapshot

LIMITS = load_stand(stand_dict()).interlocks
assert LIMITS is not None


def _box(plate: float) -> Status:
    return Status(
        plates=(plate,) * 8,
        setpoints=(plate,) * 8,
        power=(True,) * 8,
        air=21.0,
        water=10.0,
        humidity=1.0,
        dew_point=-35.0,
        lid_closed=True,
        valve=True,
        flow=10.0,
        interlock_ok=True,
    )


@pytest.mark.parametrize(
    ("plate", "bath", "fault"),
    [
        (20.0, 10.0, False),  # the end of a qualification: warm plates, bath at warm - 10 K
        (-20.0, 10.0, True),  # cold plates, whatever the bath
        (None, 10.0, True),  # no coldbox: the bath is the stand's temperature
        (None, 20.0, False),
    ],
)
def test_a_stopped_chiller_is_a_fault_when_the_stand_is_cold(
    plate: float | None, bath: float, fault: bool
) -> None:
    assert LIMITS is not None and LIMITS.cold_below == 15
    snapshot = Snapshot(
        time=0.0,
        box=None if plate is None else _box(plate),
        chiller=ChillerReading(running=False, flags=frozenset(), bath=bath),
    )
    reasons = [f.reason for f in environment(snapshot, LIMITS)]
    assert any("the chiller is stopped while the stand is cold" in r for r in reasons) is fault


def test_a_reading_over_its_limit_acts_only_when_the_next_reading_agrees(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One garbled bath (220 °C for 20 °C) is logged and not acted on; two in a row act."""
    confirmation = Confirmation()

    def judge(bath: float, number: int) -> tuple[list[str], list[str]]:
        snapshot = Snapshot(time=0.0, chiller=ChillerReading(True, frozenset(), bath))
        snapshot.sources, snapshot.answers = {"chiller": "chiller"}, {"chiller": number}
        act, pending = confirmation.judge(environment(snapshot, LIMITS), snapshot.answers)
        return [f.reason for f in act], [f.reason for f in pending]

    assert judge(220.0, 1) == ([], ["over-temperature: chiller bath at 220.0 °C, above 45 °C "
                                    "(interlocks.over_temperature)"])  # fmt: skip
    assert judge(220.0, 1)[0] == []  # the same reading checked again confirms nothing
    assert judge(20.0, 2) == ([], [])
    assert "not confirmed by the next reading, not acted on" in caplog.text
    assert "chiller bath at 220.0 °C" in caplog.text
    assert judge(230.0, 3)[0] == []
    (acted,), pending = judge(231.0, 4)
    assert "chiller bath at 231.0 °C" in acted and pending == []
    assert judge(232.0, 5)[0] != []  # still over: acted on at every check
    assert judge(20.0, 6) == ([], [])


def test_the_live_clock_counts_a_stall_of_the_loop_as_one_step() -> None:
    now = [100.0]
    clock = LiveClock(max_step=1.0, source=lambda: now[0])
    for _ in range(10):
        now[0] += 0.25
        clock.tick()
    assert clock() == pytest.approx(2.5)
    now[0] += 30.0  # the process was stopped (SIGSTOP) or starved
    assert clock() == pytest.approx(3.5)
    clock.tick()
    now[0] += 0.5
    assert clock() == pytest.approx(4.0)
