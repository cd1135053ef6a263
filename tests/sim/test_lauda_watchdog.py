"""The Lauda simulator's communication watchdog and Safe Mode (LRZ 913/926 interface modules)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from test_lauda import StepClock, check

Start = Callable[..., Any]


def test_safe_setpoint_and_timeout_read_back(raw_sim: Start) -> None:
    chiller = raw_sim("lauda", clock=StepClock())
    check(
        chiller,
        [
            ("IN_SP_07", "020.00"),
            ("IN_SP_08", "0"),
            ("OUT_SP_07_25.5", "OK"),
            ("IN_SP_07", "025.50"),
            ("OUT_SP_08_30", "OK"),
            ("IN_SP_08", "30"),
            ("OUT_SP_07_250", "ERR_6"),
            ("OUT_SP_08_3601", "ERR_6"),
            ("OUT_SP_08_2.5", "ERR_5"),
        ],
    )


def test_silence_beyond_the_timeout_stops_the_chiller(raw_sim: Start) -> None:
    clock = StepClock()
    chiller = raw_sim("lauda", clock=clock)
    check(chiller, {"START": "OK", "OUT_SP_00_-10": "OK", "OUT_SP_08_30": "OK"})
    clock.seconds = 29.0
    check(chiller, {"IN_MODE_02": "0", "STAT": "0000000"})  # a read is communication too
    clock.seconds = 58.0
    check(chiller, {"IN_MODE_02": "0"})
    clock.seconds = 89.0  # 31 s of silence: alarm 22, standby
    check(chiller, {"IN_MODE_02": "1", "STAT": "0100000", "IN_SP_00": "-010.00"})
    check(chiller, {"OUT_SP_08_0": "OK", "STAT": "0000000", "IN_MODE_02": "1"})
    clock.seconds = 10_000.0
    check(chiller, {"IN_MODE_02": "1", "STAT": "0000000"})  # monitoring off


def test_safe_mode_holds_the_safe_setpoint(raw_sim: Start) -> None:
    clock = StepClock()
    chiller = raw_sim("lauda", clock=clock, safe_mode=True)
    check(chiller, {"START": "OK", "OUT_SP_00_-20": "OK", "OUT_SP_07_18": "OK"})
    check(chiller, {"OUT_SP_08_5": "OK"})
    clock.seconds = 6.0
    check(chiller, {"IN_MODE_02": "0", "IN_SP_00": "018.00", "STAT": "0010000"})
    assert chiller.sim.instrument.snapshot()["safe_mode_active"]


def test_the_timeout_fires_at_its_deadline_not_at_the_next_command(raw_sim: Start) -> None:
    clock = StepClock()
    chiller = raw_sim("lauda", clock=clock, time_constant=100.0, standby_time_constant=100.0)
    check(chiller, {"START": "OK", "OUT_SP_00_-20": "OK", "OUT_SP_08_100": "OK"})
    clock.seconds = 600.0  # running for 100 s (towards -20), then standby (towards 20)
    bath = chiller.sim.instrument.snapshot()["bath"]
    running_part = -20 + 40 * 2.718281828 ** (-1.0)
    expected = 20 + (running_part - 20) * 2.718281828 ** (-5.0)
    assert abs(bath - expected) < 0.05


def test_a_model_without_the_watchdog_refuses_its_commands(raw_sim: Start) -> None:
    chiller = raw_sim("lauda", clock=StepClock(), communication_watchdog=False)
    check(chiller, {"OUT_SP_08_30": "ERR_3", "IN_SP_08": "ERR_3", "OUT_SP_07_20": "ERR_3"})
