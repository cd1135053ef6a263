"""At the session's prompt: the pause message (which slots the paused plan holds at high voltage,
how to make the stand safe) and `wa()`, `read(device)`, `where()`."""

from __future__ import annotations

import re
from collections.abc import Generator
from typing import Any

import bluesky.plan_stubs as bps
import pytest
from bluesky import RunEngine
from bluesky.utils import RunEngineInterrupted

from teststand.app.shell import PauseMessage, shell_helpers
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


def test_wa_read_and_where_at_the_prompt(
    RE: RunEngine, stand: TestStand, capsys: pytest.CaptureFixture[str]
) -> None:
    helpers = shell_helpers(stand)
    RE(hv_ramp(stand, slots=[3], target=40, rate=50))
    helpers["where"]()
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 8 and lines[2].startswith("slot 3  20UPGM22110003")
    assert re.search(r"bias\s+40 V\s+I\s+[\d.]+ µA\s+T\s+[-\d.]+ °C", lines[2]), lines[2]
    assert "bias       0 V" in lines[0]
    helpers["read"](stand.slots[3])
    shown = capsys.readouterr().out.splitlines()
    assert shown[0] == "slot3:" and any(line.split()[:3] == ["bias", "40", "V"] for line in shown)
    helpers["wa"]()
    every = capsys.readouterr().out.splitlines()
    assert every[-1].startswith("OK: all 14 devices answered")
    assert "hv:" in every and "slot8:" in every
    RE(hv_off(stand, [3]))
