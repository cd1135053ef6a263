"""The Lauda simulator over TCP: exact replies, every error, RS-485 prefix, LOCAL, bath physics."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import pytest

from teststand.sim.clock import SimClock

Start = Callable[..., Any]


class StepClock(SimClock):
    """Simulated time that moves only when the test sets `seconds`."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds = 0.0

    def now(self) -> float:
        return self.seconds


def lag(start: float, target: float, elapsed: float, tau: float) -> float:
    return target + (start - target) * math.exp(-elapsed / tau)


def check(client: Any, exchanges: dict[str, str] | list[tuple[str, str]]) -> None:
    """Send each command and compare its reply exactly."""
    pairs = list(exchanges.items()) if isinstance(exchanges, dict) else exchanges
    for command, reply in pairs:
        assert client.ask(command) == reply, command


POWER_UP = {
    "IN_PV_00": "020.00",
    "IN_PV_01": "020.00",
    "IN_PV_02": "0.00",
    "IN_PV_05": "8",
    "IN_PV_10": "20000",
    "IN_SP_00": "020.00",
    "IN_SP_01": "3",
    "IN_SP_02": "2",
    "IN_SP_03": "205.00",
    "IN_SP_04": "200.00",
    "IN_SP_05": "-090.00",
    "IN_MODE_00": "0",
    "IN_MODE_01": "0",
    "IN_MODE_02": "1",
    "TYPE": "RP 890",
    "VERSION_R": "1.36",
    "STATUS": "0",
    "STAT": "0000000",
}

ERRORS = {
    "IN_PV_00" + "0" * 80: "ERR_2",
    "IN_PV_99": "ERR_3",
    "in_pv_00": "ERR_3",
    "IN_PV_00_5": "ERR_3",
    "OUT_SP_09_1": "ERR_3",
    "STARTX": "ERR_3",
    "A005_IN_PV_00": "ERR_3",
    "OUT_SP_00": "ERR_5",
    "OUT_SP_00_": "ERR_5",
    "OUT_SP_00_abc": "ERR_5",
    "OUT_SP_00_20.123": "ERR_5",
    "OUT_SP_00_12345": "ERR_5",
    "OUT_SP_00_1e2": "ERR_5",
    "OUT_SP_00_nan": "ERR_5",
    "OUT_SP_01_2.5": "ERR_5",
    "OUT_SP_00_200.01": "ERR_6",
    "OUT_SP_00_-90.01": "ERR_6",
    "OUT_SP_01_0": "ERR_6",
    "OUT_SP_01_9": "ERR_6",
    "OUT_SP_02_3": "ERR_6",
    "OUT_SP_04_201": "ERR_6",
    "OUT_SP_05_-91": "ERR_6",
    "OUT_MODE_00_2": "ERR_6",
    "OUT_MODE_01_4": "ERR_6",
    "OUT_SP_04_-90": "ERR_32",
    "OUT_SP_05_200": "ERR_32",
    "IN_PV_03": "ERR_33",
    "OUT_MODE_01_1": "ERR_33",
    "OUT_MODE_01_2": "ERR_33",
}


def test_reads_at_power_up(raw_sim: Start) -> None:
    check(raw_sim("lauda", clock=StepClock()), POWER_UP)


def test_writes_answer_ok_and_read_back(raw_sim: Start) -> None:
    check(
        raw_sim("lauda", clock=StepClock()),
        [
            ("OUT_SP_00_-10.5", "OK"),
            ("IN_SP_00", "-010.50"),
            ("OUT_SP_00_+0.00", "OK"),
            ("IN_SP_00", "000.00"),
            ("OUT_SP_01_5", "OK"),
            ("IN_SP_01", "5"),
            ("OUT_SP_02_1", "OK"),
            ("IN_SP_02", "1"),
            ("OUT_SP_04_150.5", "OK"),
            ("IN_SP_04", "150.50"),
            ("OUT_SP_05_-40", "OK"),
            ("IN_SP_05", "-040.00"),
            ("OUT_MODE_00_1", "OK"),
            ("IN_MODE_00", "1"),
            ("START", "OK"),
            ("IN_MODE_02", "0"),
            ("IN_PV_02", "0.50"),
            ("STOP", "OK"),
            ("IN_MODE_02", "1"),
            ("IN_PV_02", "0.00"),
        ],
    )


def test_space_and_underscore_are_interchangeable(raw_sim: Start) -> None:
    client = raw_sim("lauda", clock=StepClock(), terminator=b"\n\r")
    check(client, {"IN PV 00": "020.00", "OUT SP 00 15.5": "OK", "  IN_SP 00  ": "015.50"})


def test_every_error_reply(raw_sim: Start) -> None:
    client = raw_sim("lauda", clock=StepClock())
    check(client, ERRORS)
    check(client, {k: v for k, v in POWER_UP.items() if k != "IN_PV_03"})


def test_limits_bound_the_setpoint(raw_sim: Start) -> None:
    check(
        raw_sim("lauda", clock=StepClock(), range=[-45, 150]),
        {
            "IN_SP_05": "-045.00",
            "OUT_SP_04_151": "ERR_6",
            "OUT_SP_00_80": "OK",
            "OUT_SP_04_50": "OK",
            "IN_SP_00": "050.00",
            "OUT_SP_00_60": "ERR_6",
            "OUT_SP_05_50": "ERR_32",
            "OUT_SP_05_49.99": "OK",
            "OUT_SP_04_49.99": "ERR_32",
            "OUT_SP_00_50": "OK",
        },
    )


def test_external_control_sources(raw_sim: Start) -> None:
    check(
        raw_sim("lauda", clock=StepClock(), external_pt100=True),
        [
            ("IN_PV_03", "020.00"),
            ("OUT_MODE_01_1", "OK"),
            ("IN_MODE_01", "1"),
            ("IN_PV_01", "020.00"),
            ("OUT_MODE_01_3", "OK"),
            ("IN_PV_01", "ERR_8"),
            ("STAT", "0010001"),
            ("OUT_PV_05_-12.34", "OK"),
            ("IN_PV_01", "-012.34"),
            ("STAT", "0000000"),
            ("OUT_PV_05_x", "ERR_5"),
        ],
    )


def test_rs485_address_prefix(raw_sim: Start) -> None:
    client = raw_sim("lauda", clock=StepClock(), address=5)
    check(
        client,
        {
            "A005_IN_PV_00": "A005_020.00",
            "A005 IN_SP_00": "A005_020.00",
            "A005_OUT_SP_00_-5": "A005_OK",
            "A005_START": "A005_OK",
            "A005_FOO": "A005_ERR_3",
            "A005_OUT_SP_00_x": "A005_ERR_5",
        },
    )
    for foreign in ("A006_IN_PV_00", "IN_PV_00", "A05_IN_PV_00"):
        assert client.ask(foreign, timeout=0.3) is None, foreign
    assert client.ask("A005_IN_SP_00") == "A005_-005.00"


def test_bad_options_are_refused(raw_sim: Start) -> None:
    with pytest.raises(ValueError, match="address"):
        raw_sim("lauda", address=128)
    with pytest.raises(ValueError, match="range"):
        raw_sim("lauda", range=[10, -10])


def test_local_control_refuses_every_write(raw_sim: Start) -> None:
    client = raw_sim("lauda", clock=StepClock())
    client.sim.set_faults("local")
    check(
        client,
        {
            "OUT_SP_00_10": "ERR_36",
            "OUT_SP_01_4": "ERR_36",
            "OUT_MODE_00_1": "ERR_36",
            "OUT_PV_05_1": "ERR_36",
            "START": "ERR_36",
            "STOP": "ERR_36",
            "FOO": "ERR_3",
            "IN_SP_00": "020.00",
        },
    )
    client.sim.set_faults("local=0")
    check(client, {"OUT_SP_00_10": "OK", "IN_SP_00": "010.00"})


def test_setpoint_changes_per_hour(raw_sim: Start) -> None:
    clock = StepClock()
    client = raw_sim("lauda", clock=clock, setpoint_limit_per_hour=20)
    for step in range(20):
        clock.seconds = step * 10.0
        assert client.ask(f"OUT_SP_00_{step}") == "OK"
    check(client, {"OUT_SP_00_300": "ERR_6", "OUT_SP_00_30": "ERR_38", "IN_SP_00": "019.00"})
    clock.seconds = 3599.0
    assert client.ask("OUT_SP_00_30") == "ERR_38"
    clock.seconds = 3600.0
    check(client, {"OUT_SP_00_30": "OK", "OUT_SP_00_31": "ERR_38", "IN_SP_00": "030.00"})


def test_no_setpoint_limit_by_default(raw_sim: Start) -> None:
    client = raw_sim("lauda", clock=StepClock())
    assert all(client.ask(f"OUT_SP_00_{n}") == "OK" for n in range(30))


def test_bath_follows_setpoint_running_and_drifts_in_standby(raw_sim: Start) -> None:
    clock = StepClock()
    client = raw_sim("lauda", clock=clock)
    check(client, {"OUT_SP_00_-10": "OK"})
    clock.seconds = 1000.0
    check(client, {"IN_PV_00": "020.00", "START": "OK"})
    clock.seconds = 1300.0
    check(client, {"IN_PV_00": "001.04", "IN_PV_10": "1036", "IN_PV_01": "001.04"})
    clock.seconds = 1600.0
    bath = lag(20.0, -10.0, 600.0, 300.0)
    check(client, {"IN_PV_00": f"-00{abs(bath):.2f}", "STOP": "OK"})
    clock.seconds = 2800.0  # standby lag: 4 x 300 s
    assert client.ask("IN_PV_00") == f"0{lag(bath, 20.0, 1200.0, 1200.0):.2f}"


def test_cooling_off_cannot_go_below_ambient(raw_sim: Start) -> None:
    clock = StepClock()
    client = raw_sim("lauda", clock=clock, ambient=25.0, time_constant=60.0)
    check(client, {"IN_SP_00": "025.00", "OUT_SP_02_0": "OK", "OUT_SP_00_-10": "OK", "START": "OK"})
    clock.seconds = 600.0
    check(client, {"IN_PV_00": "025.00", "OUT_SP_00_40": "OK"})
    clock.seconds = 660.0
    assert client.ask("IN_PV_00") == f"0{lag(25.0, 40.0, 60.0, 60.0):.2f}"
    check(client, {"OUT_SP_02_2": "OK", "OUT_SP_00_-10": "OK"})
    clock.seconds = 1260.0
    assert client.ask("IN_PV_00") == "-010.00"


def test_bath_lag_in_accelerated_real_time(raw_sim: Start) -> None:
    """At speed 1000 one 300 s time constant takes 0.3 s: the bath has gone ~63 % of the way."""
    client = raw_sim("lauda", speed=1000)
    clock = client.sim.instrument.clock
    assert client.ask("OUT_SP_00_-10") == "OK"
    start_before = clock.now()
    assert client.ask("START") == "OK"
    start_after = clock.now()
    while clock.now() < start_after + 300.0:
        time.sleep(0.005)
    read_before = clock.now()
    bath = float(client.ask("IN_PV_00"))
    read_after = clock.now()
    coldest = lag(20.0, -10.0, read_after - start_before, 300.0)
    warmest = lag(20.0, -10.0, read_before - start_after, 300.0)
    assert coldest - 0.01 <= bath <= warmest + 0.01
    # at least one time constant has passed (63 %), however late the read: never all the way
    assert 0.63 < (20.0 - bath) / 30.0 < 1.0
