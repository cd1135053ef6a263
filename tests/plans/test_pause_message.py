"""The session's pause message: which slots the paused plan holds at high voltage, and how to
make the stand safe."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import bluesky.plan_stubs as bps
import pytest
from bluesky import RunEngine
from bluesky.utils import RunEngineInterrupted

from teststand.app.shell import PauseMessage
from teststand.plans.hv import hv_off, hv_ramp
from teststand.stand import TestStand


def pausing() -> Generator[Any, Any, None]:
    yield from bps.checkpoint()
    yield from bps.pause()


def test_the_pause_message_names_the_slots_that_hold_hv(RE: RunEngine, stand: TestStand) -> None:
    RE.pause_msg = PauseMessage(stand.slots)  # type: ignore[assignment]
    RE(hv_ramp(stand, slots=[1, 2], target=50, rate=50))
    with pytest.raises(RunEngineInterrupted) as paused:
        RE(pausing())
    text = str(paused.value)
    assert "The paused plan holds the HV: slot 1 at 50 V, slot 2 at 50 V." in text, text
    assert "RE.abort() (the plan's cleanup brings HV to 0 V)" in text
    assert "RE(hv_off())" in text
    RE.abort()
    RE(hv_off(stand, [1, 2]))
    assert "No slot is biased" in str(PauseMessage(stand.slots))
