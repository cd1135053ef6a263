"""The coldbox simulator over TCP: exact replies and errors, LOCAL, plates, humidity, interlock."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import pytest

from teststand.sim.clock import SimClock
from teststand.sim.lauda import Lauda

Start = Callable[..., Any]
ALL_20 = ",".join(["20.00"] * 8)
ALL_OFF = ",".join(["off"] * 8)


class StepClock(SimClock):
    """Simulated time that stands still until the test moves `seconds`."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds = 0.0

    def now(self) -> float:
        return self.seconds


def magnus_dew_point(temperature: float, rh: float) -> float:
    """PROTOCOLS.md: γ = ln(RH/100) + 17.62·T/(243.12 + T); T_dew = 243.12·γ/(17.62 − γ)."""
    gamma = math.log(rh / 100.0) + 17.62 * temperature / (243.12 + temperature)
    return 243.12 * gamma / (17.62 - gamma)


def magnus_rh(temperature: float, dew_point: float) -> float:
    """The same formula solved for RH."""
    gamma_dew = 17.62 * dew_point / (243.12 + dew_point)
    return 100.0 * math.exp(gamma_dew - 17.62 * temperature / (243.12 + temperature))


def lag(start: float, target: float, elapsed: float, tau: float) -> float:
    return target + (start - target) * math.exp(-elapsed / tau)


def value(client: Any, command: str) -> float:
    """The number in a `Name = value` reply."""
    reply = client.ask(command)
    name, _, number = reply.partition(" = ")
    assert name == command.split()[1], reply
    return float(number)


def check(client: Any, pairs: list[tuple[str, str]]) -> None:
    """Send each command and compare its reply exactly."""
    for command, reply in pairs:
        assert client.ask(command) == reply, command


@pytest.fixture
def stepped(raw_sim: Start) -> Callable[..., tuple[Any, StepClock]]:
    """A coldbox on a clock the test moves: `(client, clock) = stepped(**options)`."""

    def start(**options: Any) -> tuple[Any, StepClock]:
        clock = StepClock()
        return raw_sim("coldbox", clock=clock, **options), clock

    return start


def test_reads_at_start(stepped: Callable[..., tuple[Any, StepClock]]) -> None:
    client, _ = stepped()
    check(
        client,
        [
            ("get Temp", f"Temp = {ALL_20}"),
            ("get Temp 0", f"Temp = {ALL_20}"),
            ("get Temp 3", "Temp = 20.00"),
            ("tec 3 get Temp", "Temp = 20.00"),
            ("GET temp TEC 8", "Temp = 20.00"),
            ("get Temp_Set 1", "Temp_Set = 20.00"),
            ("get Power", f"Power = {ALL_OFF}"),
            ("get Temp_Air", "Temp_Air = 20.00"),
            ("get Temp_W", "Temp_W = 20.00"),
            ("get RH", f"RH = {magnus_rh(20.0, 9.0):.2f}"),
            ("get DP", "DP = 9.00"),
            ("get Lid", "Lid = closed"),
            ("get valve0", "valve0 = off"),
            ("get Flow", "Flow = 0.0"),
            ("get Interlock", "Interlock = ok"),
            (
                "get Status",
                f"Status = Temp={ALL_20};Temp_Set={ALL_20};Power={ALL_OFF};Temp_Air=20.00;"
                "Temp_W=20.00;RH=49.15;DP=9.00;Lid=closed;valve0=off;Flow=0.0;Interlock=ok",
            ),
        ],
    )


ERRORS = [
    ("   ", "ERR empty command"),
    ("frob", "ERR unknown command: frob"),
    ("get", "ERR missing parameter"),
    ("get Foo", "ERR unknown parameter: Foo"),
    ("cmd Power_Up", "ERR unknown parameter: Power_Up"),
    ("set RH 5", "ERR read only: RH"),
    ("set Status 1", "ERR read only: Status"),
    ("set Temp_Set", "ERR missing value"),
    ("set Temp_Set abc", "ERR bad value: abc"),
    ("set Temp_Set nan", "ERR bad value: nan"),
    ("set Temp_Set 1e1", "ERR bad value: 1e1"),
    ("set valve0 maybe", "ERR bad value: maybe"),
    ("set Temp_Set -40.01", "ERR out of range: Temp_Set -40..40"),
    ("set Temp_Set 41 2", "ERR out of range: Temp_Set -40..40"),
    ("get Temp 9", "ERR bad channel: 9"),
    ("get Temp -1", "ERR bad channel: -1"),
    ("get Temp x", "ERR bad channel: x"),
    ("cmd Power_On 9", "ERR bad channel: 9"),
    ("set Temp_Set 0 1.5", "ERR bad channel: 1.5"),
    ("get RH 1", "ERR too many arguments"),
    ("get Temp 1 2", "ERR too many arguments"),
    ("set valve0 on 1", "ERR too many arguments"),
    ("tec 3 get RH", "ERR too many arguments"),
]


def test_every_error_reply(stepped: Callable[..., tuple[Any, StepClock]]) -> None:
    client, _ = stepped()
    check(client, ERRORS)
    client.sock.sendall(b"get \xe9t\xe9\r\n")
    assert client.read_line() == b"ERR unknown parameter: ?t?"
    check(client, [("get Temp_Set", f"Temp_Set = {ALL_20}"), ("get valve0", "valve0 = off")])


def test_setpoints_power_and_valve(stepped: Callable[..., tuple[Any, StepClock]]) -> None:
    client, _ = stepped()
    check(
        client,
        [
            ("set Temp_Set -20 3", "OK"),
            ("get Temp_Set", "Temp_Set = 20.00,20.00,-20.00,20.00,20.00,20.00,20.00,20.00"),
            ("cmd Power_On tec 3", "OK"),
            ("get Power", "Power = off,off,on,off,off,off,off,off"),
            ("set Temp_Set -40", "OK"),
            ("SET TEMP_SET 40 0", "OK"),
            ("get Temp_Set 5", "Temp_Set = 40.00"),
            ("cmd power_on", "OK"),
            ("get Power 8", "Power = on"),
            ("cmd Power_Off 0", "OK"),
            ("get Power", f"Power = {ALL_OFF}"),
            ("SET valve0 ON", "OK"),
            ("get VALVE0", "valve0 = on"),
            ("get Flow", "Flow = 20.0"),
            ("set valve0 off", "OK"),
            ("get Flow", "Flow = 0.0"),
        ],
    )


def test_local_control_refuses_set_and_cmd(stepped: Callable[..., tuple[Any, StepClock]]) -> None:
    client, _ = stepped()
    client.sim.set_faults("local")
    check(
        client,
        [
            ("set Temp_Set 0", "ERR local control"),
            ("set valve0 on", "ERR local control"),
            ("cmd Power_On", "ERR local control"),
            ("cmd Power_Off 2", "ERR local control"),
            ("set RH 1", "ERR read only: RH"),
            ("get Temp_Set 1", "Temp_Set = 20.00"),
        ],
    )
    client.sim.set_faults("local=0")
    check(client, [("set Temp_Set 0", "OK"), ("get Temp_Set 1", "Temp_Set = 0.00")])


def test_plates_follow_setpoint_within_tec_reach(
    stepped: Callable[..., tuple[Any, StepClock]],
) -> None:
    client, clock = stepped()
    check(client, [("set Temp_Set -10 1", "OK"), ("set Temp_Set -40 2", "OK")])
    check(client, [("cmd Power_On 1", "OK"), ("cmd Power_On 2", "OK")])
    clock.seconds = 60.0
    check(client, [("get Temp 1", "Temp = 1.04"), ("get Temp 3", "Temp = 20.00")])
    clock.seconds = 1200.0  # 20 time constants: plate 2 stops at chiller - 35 K
    check(client, [("get Temp 1", "Temp = -10.00"), ("get Temp 2", "Temp = -15.00")])
    check(client, [("cmd Power_Off 1", "OK")])
    clock.seconds = 1260.0
    assert client.ask("get Temp 1") == f"Temp = {lag(-10.0, 20.0, 60.0, 60.0):.2f}"
    assert client.sim.instrument.plate_temperature(2) == pytest.approx(-15.0, abs=1e-6)
    mean = client.sim.instrument.temperature
    assert mean == pytest.approx((lag(-10.0, 20.0, 60.0, 60.0) - 15.0 + 6 * 20.0) / 8, abs=1e-6)


def test_plates_follow_a_chiller_callable(stepped: Callable[..., tuple[Any, StepClock]]) -> None:
    water = [20.0]
    client, clock = stepped(chiller=lambda: water[0], time_constant=100.0)
    water[0] = -10.0
    clock.seconds = 100.0
    check(client, [("get Temp_W", "Temp_W = -10.00"), ("get Temp 4", "Temp = 1.04")])
    check(client, [("set Temp_Set 30 4", "OK"), ("cmd Power_On 4", "OK")])
    clock.seconds = 3000.0  # the TEC reaches 35 K above the water at most
    assert client.ask("get Temp 4") == "Temp = 25.00"


def test_coldbox_follows_a_lauda_bath(raw_sim: Start) -> None:
    clock = StepClock()
    lauda = Lauda(clock, time_constant=300.0)

    def bath() -> float:
        with lauda.lock:
            lauda.tick()
            return lauda.temperature

    client = raw_sim("coldbox", clock=clock, chiller=bath, time_constant=1.0)
    assert lauda.handle("OUT_SP_00_-10") == "OK"
    assert lauda.handle("START") == "OK"
    clock.seconds = 300.0
    check(client, [("get Temp_W", "Temp_W = 1.04"), ("get Temp 1", "Temp = 1.04")])


def test_dry_air_lowers_humidity_and_leak_raises_it(
    stepped: Callable[..., tuple[Any, StepClock]],
) -> None:
    client, clock = stepped()
    rh_start = value(client, "get RH")
    check(client, [("set valve0 on", "OK")])
    clock.seconds = 120.0
    flushed = lag(9.0, -60.0, 120.0, 120.0)
    check(client, [("get DP", f"DP = {flushed:.2f}"), ("get Flow", "Flow = 20.0")])
    rh_flushed = value(client, "get RH")
    assert rh_flushed == pytest.approx(magnus_rh(20.0, flushed), abs=0.006)
    assert rh_flushed < rh_start / 5
    check(client, [("set valve0 off", "OK")])
    clock.seconds = 1920.0  # one leak time constant
    assert value(client, "get DP") == pytest.approx(lag(flushed, 9.0, 1800.0, 1800.0), abs=0.006)
    assert value(client, "get RH") > rh_flushed


def test_dew_point_is_the_magnus_formula(stepped: Callable[..., tuple[Any, StepClock]]) -> None:
    client, clock = stepped(chiller=15.0)
    check(client, [("set valve0 on", "OK"), ("set Temp_Set -25", "OK"), ("cmd Power_On", "OK")])
    for seconds in (0.0, 30.0, 90.0, 200.0, 400.0):
        clock.seconds = seconds
        air, rh, dew = (value(client, f"get {name}") for name in ("Temp_Air", "RH", "DP"))
        assert 1.0 < rh < 100.0
        assert dew == pytest.approx(magnus_dew_point(air, rh), abs=0.05), seconds


def test_dew_point_saturates_at_air_temperature(
    stepped: Callable[..., tuple[Any, StepClock]],
) -> None:
    client, clock = stepped(chiller=-10.0, air_time_constant=1.0)
    clock.seconds = 10.0
    check(client, [("get RH", "RH = 100.00"), ("get DP", "DP = -10.00")])


def test_open_lid_trips_interlock_and_humidity_rises_fast(
    stepped: Callable[..., tuple[Any, StepClock]],
) -> None:
    client, clock = stepped()
    check(client, [("set valve0 on", "OK"), ("cmd Power_On", "OK")])
    clock.seconds = 600.0
    flushed = lag(9.0, -60.0, 600.0, 120.0)
    box = client.sim.instrument
    box.open_lid()
    check(
        client,
        [
            ("get Lid", "Lid = open"),
            ("get Interlock", "Interlock = tripped"),
            ("get Power", f"Power = {ALL_OFF}"),
            ("cmd Power_On 1", "ERR interlock tripped"),
            ("cmd Power_Off", "OK"),
        ],
    )
    clock.seconds = 660.0
    assert value(client, "get DP") == pytest.approx(lag(flushed, 9.0, 60.0, 60.0), abs=0.006)
    box.close_lid()
    check(client, [("get Interlock", "Interlock = ok"), ("get Power 1", "Power = off")])
    check(client, [("cmd Power_On", "OK"), ("get Power 1", "Power = on")])


def test_injected_interlock_and_flow_failure(
    stepped: Callable[..., tuple[Any, StepClock]],
) -> None:
    client, clock = stepped()
    box = client.sim.instrument
    check(client, [("set valve0 on", "OK"), ("cmd Power_On", "OK")])
    box.set_interlock(True)
    check(client, [("get Interlock", "Interlock = tripped"), ("get Lid", "Lid = closed")])
    check(client, [("get Power", f"Power = {ALL_OFF}"), ("cmd Power_On", "ERR interlock tripped")])
    box.set_interlock(False)
    check(client, [("get Interlock", "Interlock = ok"), ("cmd Power_On", "OK")])
    clock.seconds = 120.0
    box.set_flow_failure(True)
    check(client, [("get Flow", "Flow = 0.0"), ("get valve0", "valve0 = on")])
    flushed = lag(9.0, -60.0, 120.0, 120.0)
    clock.seconds = 300.0  # no flow: the dew point leaks back up instead of falling further
    assert value(client, "get DP") == pytest.approx(lag(flushed, 9.0, 180.0, 1800.0), abs=0.006)
    box.set_flow_failure(False)
    check(client, [("get Flow", "Flow = 20.0")])


def test_ambient_dew_point_can_change(stepped: Callable[..., tuple[Any, StepClock]]) -> None:
    client, clock = stepped()
    client.sim.instrument.set_ambient_dew_point(15.0)
    clock.seconds = 1800.0
    assert value(client, "get DP") == pytest.approx(lag(9.0, 15.0, 1800.0, 1800.0), abs=0.006)


def test_a_humid_spell_holds_until_it_ends_then_the_dry_air_flushes_it(
    stepped: Callable[..., tuple[Any, StepClock]],
) -> None:
    client, clock = stepped()
    box = client.sim.instrument
    check(client, [("set valve0 on", "OK")])
    box.humid_air(15.0)  # below the air's 20 °C (above it the air is saturated)
    assert value(client, "get DP") == pytest.approx(15.0, abs=0.006)
    clock.seconds = 600.0  # the dry air is as wet as the box: it stays humid
    assert value(client, "get DP") == pytest.approx(15.0, abs=0.006)
    box.humid_air(None)
    box.humid_air(None)  # ending it twice changes nothing
    clock.seconds = 720.0
    assert value(client, "get DP") == pytest.approx(lag(15.0, -60.0, 120.0, 120.0), abs=0.006)
    assert box.ambient_dew_point == 9.0 and box.dry_air_dew_point == -60.0


def test_plate_lag_and_flush_in_accelerated_real_time(raw_sim: Start) -> None:
    """At speed 1000 one 300 s plate time constant takes 0.3 s of real time."""
    client = raw_sim("coldbox", speed=1000, time_constant=300.0, flush_time_constant=300.0)
    clock = client.sim.instrument.clock
    rh_start = value(client, "get RH")
    check(client, [("set Temp_Set -10 1", "OK"), ("set valve0 on", "OK")])
    start_before = clock.now()
    assert client.ask("cmd Power_On 1") == "OK"
    start_after = clock.now()
    while clock.now() < start_after + 300.0:
        time.sleep(0.005)
    read_before = clock.now()
    plate = value(client, "get Temp 1")
    read_after = clock.now()
    coldest = lag(20.0, -10.0, read_after - start_before, 300.0)
    warmest = lag(20.0, -10.0, read_before - start_after, 300.0)
    assert coldest - 0.01 <= plate <= warmest + 0.01
    # at least one time constant has passed (63 %), however late the read: never all the way
    assert 0.63 < (20.0 - plate) / 30.0 < 1.0
    assert value(client, "get RH") < rh_start / 2
