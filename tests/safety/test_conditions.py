"""The interlock conditions on hand-made snapshots (a pure function: no instruments)."""

from __future__ import annotations

import pytest
from helpers import stand_dict

from teststand.config import load_stand
from teststand.devices.coldbox.protocol import Status
from teststand.safety.conditions import environment
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
