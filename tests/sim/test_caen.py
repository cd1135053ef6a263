"""The CAEN HV simulators over TCP: exact replies, group reads, addressing, ramps, OVC and trips.

Timing is checked against the simulator's own clock: an event that happens between two commands
must lie between the simulated times read just before and just after them, however loaded the
machine is.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

DT = "caen-dt8033"
N1 = "caen-n1470"

# 803x status bits
ON, RUP, RDW, OVC, UNV, TRIP = 1, 2, 4, 8, 32, 64
TRIP_14XX = 128


def value(reply: str | None) -> str:
    assert reply is not None
    assert ",VAL:" in reply, reply
    return reply.split(",VAL:", 1)[1]


def timed(client: Any, command: str) -> tuple[float, str | None, float]:
    """(simulated time before sending, reply, simulated time after the reply)."""
    clock = client.sim.instrument.clock
    before = clock.now()
    reply = client.ask(command)
    return before, reply, clock.now()


def poll(
    client: Any, command: str, done: Callable[[str], bool], since: float, limit: float = 5.0
) -> tuple[float, str, float]:
    """Ask until `done(value)`; returns (lower, value, upper) bounds on when it became true.

    `since` is a simulated time known to precede the event.
    """
    clock = client.sim.instrument.clock
    lower = since
    deadline = time.monotonic() + limit
    while True:
        before = clock.now()
        reply = value(client.ask(command))
        after = clock.now()
        if done(reply):
            return lower, reply, after
        lower = before
        assert time.monotonic() < deadline, f"{command}: still {reply}"
        time.sleep(0.005)


def ok(client: Any, *commands: str, prefix: str = "#") -> None:
    for command in commands:
        assert client.ask(command) == f"{prefix}CMD:OK", command


# -- exact replies ---------------------------------------------------------------------------
DEFAULTS_8033 = {
    "VSET": "0000.0",
    "VMIN": "0000.0",
    "VMAX": "4000.0",
    "VDEC": "1",
    "VMON": "0000.0",
    "ISET": "0100.00",
    "IMON": "0000.00",
    "IMRANGE": "HIGH",
    "MAXV": "4000",
    "RUP": "010",
    "RDW": "010",
    "TRIP": "0010.0",
    "PDWN": "RAMP",
    "POL": "+",
    "STAT": "00000",
}


def test_defaults_and_formats(raw_sim: Callable[..., Any]) -> None:
    client = raw_sim(DT)
    for parameter, expected in DEFAULTS_8033.items():
        assert client.ask(f"$CMD:MON,CH:3,PAR:{parameter}") == f"#CMD:OK,VAL:{expected}"
    ok(client, "$CMD:SET,CH:3,PAR:IMRANGE,VAL:LOW")
    assert client.ask("$CMD:MON,CH:3,PAR:IMON") == "#CMD:OK,VAL:0000.000"
    ok(client, "$CMD:SET,CH:03,PAR:VSET,VAL:1234.56", "$CMD:SET,CH:3,PAR:ISET,VAL:12.345")
    assert client.ask("$CMD:MON,CH:03,PAR:VSET") == "#CMD:OK,VAL:1234.6"
    assert client.ask("$CMD:MON,CH:3,PAR:ISET") == "#CMD:OK,VAL:0012.35"
    ok(client, "$CMD:SET,CH:3,PAR:TRIP,VAL:2.5", "$CMD:SET,CH:3,PAR:RUP,VAL:500")
    assert client.ask("$CMD:MON,CH:3,PAR:TRIP") == "#CMD:OK,VAL:0002.5"
    assert client.ask("$CMD:MON,CH:3,PAR:RUP") == "#CMD:OK,VAL:500"


@pytest.mark.parametrize(
    ("parameter", "info"),
    [
        ("VSET", "NUM;RW;0;4000;1;0.1;0;V;;"),
        ("VMON", "NUM;R;0;4000;1;0.1;0;V;;"),
        ("ISET", "NUM;RW;0;3000;2;0.01;-6;A;;"),
        ("IMON", "NUM;R;0;3000;2;0.01;-6;A;;"),
        ("RUP", "NUM;RW;1;500;0;1;0;V/s;;"),
        ("TRIP", "NUM;RW;0;1000;1;0.1;0;s;;"),
        ("PDWN", "ENUM;RW;;;;;;;KILL;RAMP"),
        ("POL", "ENUM;R;;;;;;;+;-"),
        ("STAT", "STAT;R;0;16383;0;1;0;;;"),
        ("ON", "CMD;W;;;;;;;;"),
    ],
)
def test_info(raw_sim: Callable[..., Any], parameter: str, info: str) -> None:
    client = raw_sim(DT)
    assert client.ask(f"$CMD:INFO,CH:0,PAR:{parameter}") == f"#CMD:OK,VAL:{info}"


ERRORS_8033 = [
    ("CMD:MON,CH:0,PAR:VSET", "CMD"),  # no $
    ("$", "CMD"),
    ("$CMD:GET,CH:0,PAR:VSET", "CMD"),
    ("$CMD:MON,CH0,PAR:VSET", "CMD"),
    ("$PAR:VSET,CMD:MON,CH:0", "CMD"),
    ("$CMD:MON,CH:0,CH:1,PAR:VSET", "CMD"),
    ("$CMD:MON,CH:0,PAR:VSET,VAL:1", "CMD"),
    ("$CMD:MON,CH:0,PAR:VSET,FOO:1", "CMD"),
    ("$BD:00,CMD:MON,CH:0,PAR:VSET", "CMD"),
    ("$CMD:MON,CH:9,PAR:VSET", "CH"),
    ("$CMD:MON,CH:x,PAR:VSET", "CH"),
    ("$CMD:MON,CH:-1,PAR:VSET", "CH"),
    ("$CMD:MON,CH:,PAR:VSET", "CH"),
    ("$CMD:MON,PAR:VMON", "CH"),
    ("$CMD:INFO,CH:8,PAR:VSET", "CH"),
    ("$CMD:MON,CH:0", "PAR"),
    ("$CMD:MON,CH:0,PAR:FOO", "PAR"),
    ("$CMD:MON,CH:0,PAR:vset", "PAR"),
    ("$CMD:MON,CH:0,PAR:RDWN", "PAR"),
    ("$CMD:MON,CH:0,PAR:RAMPDOWN", "PAR"),
    ("$CMD:MON,CH:0,PAR:ON", "PAR"),
    ("$CMD:MON,CH:8,PAR:OFF", "PAR"),
    ("$CMD:MON,CH:0,PAR:BDNAME", "PAR"),
    ("$CMD:SET,CH:0,PAR:POL,VAL:-", "PAR"),
    ("$CMD:SET,CH:0,PAR:VMON,VAL:1", "PAR"),
    ("$CMD:SET,CH:0,PAR:IMON,VAL:1", "PAR"),
    ("$CMD:SET,CH:0,PAR:STAT,VAL:0", "PAR"),
    ("$CMD:SET,CH:0,PAR:VMAX,VAL:100", "PAR"),
    ("$CMD:SET,CH:0,PAR:BDCLR", "PAR"),
    ("$CMD:SET,CH:0,PAR:VSET", "VAL"),
    ("$CMD:SET,CH:0,PAR:VSET,VAL:", "VAL"),
    ("$CMD:SET,CH:0,PAR:VSET,VAL:abc", "VAL"),
    ("$CMD:SET,CH:0,PAR:VSET,VAL:1e2", "VAL"),
    ("$CMD:SET,CH:0,PAR:VSET,VAL:nan", "VAL"),
    ("$CMD:SET,CH:0,PAR:VSET,VAL:4000.1", "VAL"),
    ("$CMD:SET,CH:0,PAR:VSET,VAL:-5", "VAL"),
    ("$CMD:SET,CH:0,PAR:ISET,VAL:3000.01", "VAL"),
    ("$CMD:SET,CH:0,PAR:ISET,VAL:-1", "VAL"),
    ("$CMD:SET,CH:0,PAR:MAXV,VAL:4001", "VAL"),
    ("$CMD:SET,CH:0,PAR:RUP,VAL:0", "VAL"),
    ("$CMD:SET,CH:0,PAR:RUP,VAL:501", "VAL"),
    ("$CMD:SET,CH:0,PAR:RDW,VAL:0.4", "VAL"),
    ("$CMD:SET,CH:0,PAR:TRIP,VAL:1000.1", "VAL"),
    ("$CMD:SET,CH:0,PAR:TRIP,VAL:-0.1", "VAL"),
    ("$CMD:SET,CH:0,PAR:PDWN,VAL:SLOW", "VAL"),
    ("$CMD:SET,CH:0,PAR:IMRANGE,VAL:MID", "VAL"),
    ("$CMD:SET,CH:0,PAR:ON,VAL:1", "VAL"),
]


@pytest.mark.parametrize(("command", "error"), ERRORS_8033)
def test_error_replies(raw_sim: Callable[..., Any], command: str, error: str) -> None:
    client = raw_sim(DT)
    assert client.ask(command) == f"#{error}:ERR"
    assert client.ask("$CMD:MON,CH:0,PAR:VSET") == "#CMD:OK,VAL:0000.0"  # nothing changed


def test_limits_inclusive_and_maxv(raw_sim: Callable[..., Any]) -> None:
    client = raw_sim(DT)
    ok(client, "$CMD:SET,CH:0,PAR:VSET,VAL:4000", "$CMD:SET,CH:0,PAR:ISET,VAL:3000")
    ok(client, "$CMD:SET,CH:0,PAR:RUP,VAL:1", "$CMD:SET,CH:0,PAR:TRIP,VAL:0")
    ok(client, "$CMD:SET,CH:1,PAR:MAXV,VAL:500")
    assert client.ask("$CMD:SET,CH:1,PAR:VSET,VAL:500.1") == "#VAL:ERR"
    ok(client, "$CMD:SET,CH:1,PAR:VSET,VAL:500")
    assert client.ask("$CMD:INFO,CH:1,PAR:VSET") == "#CMD:OK,VAL:NUM;RW;0;4000;1;0.1;0;V;;"


# -- group reads and writes -------------------------------------------------------------------
def test_group_read_and_write_8033(raw_sim: Callable[..., Any]) -> None:
    client = raw_sim(DT)
    assert client.ask("$CMD:MON,CH:8,PAR:VSET") == "#CMD:OK,VAL:" + ";".join(["0000.0"] * 8)
    ok(client, "$CMD:SET,CH:2,PAR:VSET,VAL:12.5")
    assert client.ask("$CMD:MON,CH:8,PAR:VSET") == (
        "#CMD:OK,VAL:0000.0;0000.0;0012.5;0000.0;0000.0;0000.0;0000.0;0000.0"
    )
    ok(client, "$CMD:SET,CH:8,PAR:RUP,VAL:20")
    assert client.ask("$CMD:MON,CH:8,PAR:RUP") == "#CMD:OK,VAL:" + ";".join(["020"] * 8)
    # all-or-nothing: channel 5's MAXV refuses 100 V, so no channel takes it
    ok(client, "$CMD:SET,CH:5,PAR:MAXV,VAL:50")
    assert client.ask("$CMD:SET,CH:8,PAR:VSET,VAL:100") == "#VAL:ERR"
    assert value(client.ask("$CMD:MON,CH:8,PAR:VSET")).split(";")[2] == "0012.5"
    assert client.ask("$CMD:MON,CH:8,PAR:STAT") == "#CMD:OK,VAL:" + ";".join(["00000"] * 8)


def test_polarity(raw_sim: Callable[..., Any]) -> None:
    client = raw_sim(DT, speed=50, polarity="+-+-+-+-")
    assert client.ask("$CMD:MON,CH:8,PAR:POL") == "#CMD:OK,VAL:+;-;+;-;+;-;+;-"
    assert client.ask("$CMD:SET,CH:1,PAR:POL,VAL:+") == "#PAR:ERR"
    assert client.ask("$CMD:SET,CH:1,PAR:VSET,VAL:-100") == "#VAL:ERR"
    ok(client, "$CMD:SET,CH:1,PAR:VSET,VAL:100", "$CMD:SET,CH:1,PAR:RUP,VAL:500")
    before, reply, _ = timed(client, "$CMD:SET,CH:1,PAR:ON")
    assert reply == "#CMD:OK"
    poll(client, "$CMD:MON,CH:1,PAR:VMON", lambda v: v == "0100.0", before)
    assert client.ask("$CMD:MON,CH:1,PAR:STAT") == "#CMD:OK,VAL:00001"


# -- ramp-down parameter name -----------------------------------------------------------------
@pytest.mark.parametrize(("kind", "prefix"), [(DT, "$"), (N1, "$BD:00,")])
def test_rdwn_firmware(raw_sim: Callable[..., Any], kind: str, prefix: str) -> None:
    client = raw_sim(kind, rdw_name="RDWN")
    reply = "#" if kind == DT else "#BD:00,"
    assert client.ask(f"{prefix}CMD:MON,CH:0,PAR:RDW") == f"{reply}PAR:ERR"
    assert client.ask(f"{prefix}CMD:SET,CH:0,PAR:RDW,VAL:20") == f"{reply}PAR:ERR"
    assert client.ask(f"{prefix}CMD:MON,CH:0,PAR:RDWN") == f"{reply}CMD:OK,VAL:010"
    assert client.ask(f"{prefix}CMD:SET,CH:0,PAR:RDWN,VAL:20") == f"{reply}CMD:OK"
    assert client.ask(f"{prefix}CMD:MON,CH:0,PAR:RDWN") == f"{reply}CMD:OK,VAL:020"


def test_rdw_firmware(raw_sim: Callable[..., Any]) -> None:
    client = raw_sim(DT)
    assert client.ask("$CMD:SET,CH:0,PAR:RDWN,VAL:20") == "#PAR:ERR"
    ok(client, "$CMD:SET,CH:0,PAR:RDW,VAL:20")
    assert client.ask("$CMD:MON,CH:0,PAR:RDW") == "#CMD:OK,VAL:020"


# -- LOCAL ------------------------------------------------------------------------------------
def test_local_refuses_every_set(raw_sim: Callable[..., Any]) -> None:
    client = raw_sim(DT)
    client.sim.set_faults("local")
    for command in (
        "$CMD:SET,CH:0,PAR:VSET,VAL:10",
        "$CMD:SET,CH:8,PAR:VSET,VAL:10",
        "$CMD:SET,CH:0,PAR:ON",
        "$CMD:SET,CH:0,PAR:OFF",
        "$CMD:SET,CH:0,PAR:VSET,VAL:99999",  # LOCAL is checked before the value
    ):
        assert client.ask(command) == "#LOC:ERR", command
    assert client.ask("$CMD:SET,CH:0,PAR:FOO,VAL:1") == "#PAR:ERR"
    assert client.ask("$CMD:MON,CH:0,PAR:VSET") == "#CMD:OK,VAL:0000.0"
    assert client.ask("$CMD:MON,CH:0,PAR:STAT") == "#CMD:OK,VAL:00000"
    client.sim.set_faults("local=0")
    ok(client, "$CMD:SET,CH:0,PAR:VSET,VAL:10")


# -- ramps ------------------------------------------------------------------------------------
def test_ramp_up_and_down_take_the_right_time(raw_sim: Callable[..., Any]) -> None:
    client = raw_sim(DT, speed=20)
    ok(client, "$CMD:SET,CH:0,PAR:VSET,VAL:100", "$CMD:SET,CH:0,PAR:RUP,VAL:20")
    ok(client, "$CMD:SET,CH:0,PAR:RDW,VAL:50")
    on_before, reply, on_after = timed(client, "$CMD:SET,CH:0,PAR:ON")
    assert reply == "#CMD:OK"
    time.sleep(0.1)  # about 2 s simulated, 40 V
    stat = int(value(client.ask("$CMD:MON,CH:0,PAR:STAT")))
    before, reply, after = timed(client, "$CMD:MON,CH:0,PAR:VMON")
    vmon = float(value(reply))
    assert 20 * (before - on_after) - 0.05 <= vmon <= min(100.0, 20 * (after - on_before)) + 0.05
    if vmon < 99.9:
        assert stat == ON | RUP
    lower, _, upper = poll(client, "$CMD:MON,CH:0,PAR:VMON", lambda v: v == "0100.0", on_before)
    assert lower - 0.01 <= on_after + 5.0 and upper + 0.01 >= on_before + 5.0
    assert client.ask("$CMD:MON,CH:0,PAR:STAT") == "#CMD:OK,VAL:00001"

    off_before, reply, off_after = timed(client, "$CMD:SET,CH:0,PAR:OFF")
    assert reply == "#CMD:OK"
    stat = int(value(client.ask("$CMD:MON,CH:0,PAR:STAT")))
    assert stat in (RDW, 0)
    lower, _, upper = poll(client, "$CMD:MON,CH:0,PAR:VMON", lambda v: v == "0000.0", off_before)
    assert lower - 0.01 <= off_after + 2.0 and upper + 0.01 >= off_before + 2.0
    assert client.ask("$CMD:MON,CH:0,PAR:STAT") == "#CMD:OK,VAL:00000"


def test_kill_drops_at_once(raw_sim: Callable[..., Any]) -> None:
    client = raw_sim(DT, speed=50)
    ok(client, "$CMD:SET,CH:8,PAR:VSET,VAL:100", "$CMD:SET,CH:8,PAR:RUP,VAL:500")
    ok(client, "$CMD:SET,CH:8,PAR:RDW,VAL:1", "$CMD:SET,CH:1,PAR:PDWN,VAL:KILL")
    before, reply, _ = timed(client, "$CMD:SET,CH:8,PAR:ON")
    assert reply == "#CMD:OK"
    poll(client, "$CMD:MON,CH:8,PAR:VMON", lambda v: v == ";".join(["0100.0"] * 8), before)
    ok(client, "$CMD:SET,CH:8,PAR:OFF")
    vmon = value(client.ask("$CMD:MON,CH:8,PAR:VMON")).split(";")
    assert vmon[1] == "0000.0"  # KILL
    assert float(vmon[0]) > 90.0  # RAMP at 1 V/s
    stat = value(client.ask("$CMD:MON,CH:8,PAR:STAT")).split(";")
    assert stat[:2] == ["00004", "00000"]


# -- over-current and trip --------------------------------------------------------------------
def test_ovc_holds_current_then_trips(raw_sim: Callable[..., Any]) -> None:
    client = raw_sim(DT, speed=20, breakdown=100.0)
    ok(client, "$CMD:SET,CH:0,PAR:ISET,VAL:10", "$CMD:SET,CH:0,PAR:TRIP,VAL:1000")
    ok(client, "$CMD:SET,CH:0,PAR:VSET,VAL:200", "$CMD:SET,CH:0,PAR:RUP,VAL:100")
    ok(client, "$CMD:SET,CH:0,PAR:RDW,VAL:50")
    before, _, _ = timed(client, "$CMD:SET,CH:0,PAR:ON")
    poll(client, "$CMD:MON,CH:0,PAR:STAT", lambda v: int(v) & OVC != 0, before)
    # constant-current mode (TRIP=1000 never trips): voltage held below breakdown at ISET
    time.sleep(0.1)
    assert client.ask("$CMD:MON,CH:0,PAR:STAT") == f"#CMD:OK,VAL:{ON | OVC | UNV:05d}"
    assert client.ask("$CMD:MON,CH:0,PAR:IMON") == "#CMD:OK,VAL:0010.00"
    assert 90.0 < float(value(client.ask("$CMD:MON,CH:0,PAR:VMON"))) < 100.0
    # setting TRIP restarts the trip counter: the channel trips TRIP s later
    set_before, reply, set_after = timed(client, "$CMD:SET,CH:0,PAR:TRIP,VAL:2")
    assert reply == "#CMD:OK"
    lower, stat, upper = poll(
        client, "$CMD:MON,CH:0,PAR:STAT", lambda v: int(v) & TRIP != 0, set_before
    )
    assert lower - 0.01 <= set_after + 2.0 and upper + 0.06 >= set_before + 2.0
    assert int(stat) in (TRIP | RDW, TRIP)  # off, ramping down (PDWN=RAMP)
    poll(client, "$CMD:MON,CH:0,PAR:VMON", lambda v: v == "0000.0", set_before)
    time.sleep(0.05)
    assert client.ask("$CMD:MON,CH:0,PAR:STAT") == f"#CMD:OK,VAL:{TRIP:05d}"  # kept
    # ON clears the trip
    ok(client, "$CMD:SET,CH:0,PAR:VSET,VAL:50", "$CMD:SET,CH:0,PAR:ON")
    stat_now = int(value(client.ask("$CMD:MON,CH:0,PAR:STAT")))
    assert stat_now & TRIP == 0 and stat_now & ON


def test_trip_zero_is_immediate_and_kill(raw_sim: Callable[..., Any]) -> None:
    client = raw_sim(DT, speed=20, breakdown=100.0)
    ok(client, "$CMD:SET,CH:0,PAR:ISET,VAL:10", "$CMD:SET,CH:0,PAR:TRIP,VAL:0")
    ok(client, "$CMD:SET,CH:0,PAR:VSET,VAL:200", "$CMD:SET,CH:0,PAR:RUP,VAL:100")
    ok(client, "$CMD:SET,CH:0,PAR:PDWN,VAL:KILL")
    before, _, _ = timed(client, "$CMD:SET,CH:0,PAR:ON")
    _, stat, upper = poll(client, "$CMD:MON,CH:0,PAR:STAT", lambda v: int(v) & TRIP != 0, before)
    assert upper - before >= 0.9  # ramping to ~99 V at 100 V/s
    assert int(stat) == TRIP
    assert client.ask("$CMD:MON,CH:0,PAR:VMON") == "#CMD:OK,VAL:0000.0"
    assert client.ask("$CMD:MON,CH:0,PAR:IMON") == "#CMD:OK,VAL:0000.00"


def test_leakage_follows_temperature(raw_sim: Callable[..., Any]) -> None:
    module = {"t": 20.0}
    client = raw_sim(DT, speed=50, temperature=lambda: module["t"])
    ok(client, "$CMD:SET,CH:0,PAR:VSET,VAL:100", "$CMD:SET,CH:0,PAR:RUP,VAL:500")
    ok(client, "$CMD:SET,CH:0,PAR:IMRANGE,VAL:LOW")
    before, _, _ = timed(client, "$CMD:SET,CH:0,PAR:ON")
    poll(client, "$CMD:MON,CH:0,PAR:VMON", lambda v: v == "0100.0", before)
    at_20 = float(value(client.ask("$CMD:MON,CH:0,PAR:IMON")))
    assert 1.0 <= at_20 <= 1.05  # 1 µA bulk + ohmic
    module["t"] = 27.0
    at_27 = float(value(client.ask("$CMD:MON,CH:0,PAR:IMON")))
    module["t"] = -20.0
    at_minus_20 = float(value(client.ask("$CMD:MON,CH:0,PAR:IMON")))
    assert 1.6 < at_27 / at_20 < 2.2
    assert at_minus_20 < 0.05 * at_20
    assert client.sim.instrument.snapshot()["temperature"] == -20.0


# -- N1470: board addressing, group of 4, board parameters -------------------------------------
def test_n1470_addressing(raw_sim: Callable[..., Any]) -> None:
    client = raw_sim(N1, board=5)
    assert client.ask("$BD:05,CMD:MON,CH:4,PAR:VSET") == (
        "#BD:05,CMD:OK,VAL:0000.0;0000.0;0000.0;0000.0"
    )
    assert client.ask("$BD:5,CMD:MON,CH:0,PAR:VMAX") == "#BD:05,CMD:OK,VAL:8000.0"
    assert client.ask("$BD:04,CMD:MON,CH:0,PAR:VSET", timeout=0.3) is None
    assert client.ask("$BD:31,CMD:SET,CH:0,PAR:ON", timeout=0.3) is None
    assert client.ask("$BD:05,CMD:MON,CH:0,PAR:STAT") == "#BD:05,CMD:OK,VAL:00000"  # not stale
    assert client.ask("$CMD:MON,CH:0,PAR:VSET") == "#BD:05,CMD:ERR"
    assert client.ask("$BD:x,CMD:MON,CH:0,PAR:VSET") == "#BD:05,CMD:ERR"
    assert client.ask("$BD:05,CMD:MON,CH:5,PAR:VSET") == "#BD:05,CH:ERR"
    assert client.ask("$BD:05,CMD:MON,CH:0,PAR:FOO") == "#BD:05,PAR:ERR"
    assert client.ask("$BD:05,CMD:SET,CH:0,PAR:VSET,VAL:8000.1") == "#BD:05,VAL:ERR"
    assert client.ask("$BD:05,CMD:SET,CH:4,PAR:VSET,VAL:8000") == "#BD:05,CMD:OK"
    assert client.ask("$BD:05,CMD:MON,CH:4,PAR:VSET") == (
        "#BD:05,CMD:OK,VAL:8000.0;8000.0;8000.0;8000.0"
    )
    client.sim.set_faults("local")
    assert client.ask("$BD:05,CMD:SET,CH:0,PAR:VSET,VAL:10") == "#BD:05,LOC:ERR"
    assert client.ask("$BD:05,CMD:MON,PAR:BDCTR") == "#BD:05,CMD:OK,VAL:LOCAL"
    assert client.ask("$BD:05,CMD:SET,PAR:BDCLR") == "#BD:05,LOC:ERR"


BOARD_N1470 = {
    "BDNAME": "N1470",
    "BDNCH": "4",
    "BDFREL": "1.05",
    "BDSNUM": "00147",
    "BDILK": "NO",
    "BDILKM": "OPEN",
    "BDCTR": "REMOTE",
    "BDTERM": "ON",
    "BDALARM": "00000",
}


def test_n1470_board_parameters(raw_sim: Callable[..., Any]) -> None:
    client = raw_sim(N1)
    for parameter, expected in BOARD_N1470.items():
        assert client.ask(f"$BD:00,CMD:MON,PAR:{parameter}") == f"#BD:00,CMD:OK,VAL:{expected}"
    assert client.ask("$BD:00,CMD:MON,CH:2,PAR:BDNAME") == "#BD:00,CMD:OK,VAL:N1470"
    assert client.ask("$BD:00,CMD:INFO,PAR:BDCTR") == "#BD:00,CMD:OK,VAL:ENUM;R;;;;;;;LOCAL;REMOTE"
    assert client.ask("$BD:00,CMD:SET,PAR:BDNAME,VAL:X") == "#BD:00,PAR:ERR"
    assert client.ask("$BD:00,CMD:MON,PAR:BDCLR") == "#BD:00,PAR:ERR"
    assert client.ask("$BD:00,CMD:SET,PAR:BDCLR,VAL:1") == "#BD:00,VAL:ERR"
    assert client.ask("$BD:00,CMD:SET,PAR:BDILKM,VAL:SHUT") == "#BD:00,VAL:ERR"
    assert client.ask("$BD:00,CMD:SET,PAR:BDILKM,VAL:CLOSED") == "#BD:00,CMD:OK"
    assert client.ask("$BD:00,CMD:MON,PAR:BDILKM") == "#BD:00,CMD:OK,VAL:CLOSED"
    assert client.ask("$BD:00,CMD:MON,PAR:VSET") == "#BD:00,CH:ERR"


def test_n1470_trip_cleared_by_bdclr(raw_sim: Callable[..., Any]) -> None:
    client = raw_sim(N1, speed=20, breakdown=[100.0, 400.0, 400.0, 400.0])
    p = "$BD:00,CMD:"
    ok(client, f"{p}SET,CH:0,PAR:ISET,VAL:10", f"{p}SET,CH:0,PAR:TRIP,VAL:0.5", prefix="#BD:00,")
    ok(client, f"{p}SET,CH:4,PAR:VSET,VAL:200", f"{p}SET,CH:4,PAR:RUP,VAL:200", prefix="#BD:00,")
    ok(client, f"{p}SET,CH:0,PAR:PDWN,VAL:KILL", prefix="#BD:00,")
    before, _, _ = timed(client, f"{p}SET,CH:4,PAR:ON")
    _, stat, _ = poll(client, f"{p}MON,CH:0,PAR:STAT", lambda v: int(v) & TRIP_14XX != 0, before)
    assert int(stat) == TRIP_14XX
    assert client.ask(f"{p}MON,PAR:BDALARM") == "#BD:00,CMD:OK,VAL:00001"
    assert value(client.ask(f"{p}MON,CH:4,PAR:STAT")).split(";")[0] == "00128"
    assert client.ask(f"{p}SET,PAR:BDCLR") == "#BD:00,CMD:OK"
    assert client.ask(f"{p}MON,PAR:BDALARM") == "#BD:00,CMD:OK,VAL:00000"
    assert client.ask(f"{p}MON,CH:0,PAR:STAT") == "#BD:00,CMD:OK,VAL:00000"  # still off
    assert client.ask(f"{p}MON,CH:0,PAR:VMON") == "#BD:00,CMD:OK,VAL:0000.0"


def test_n1470_maxv_below_vset_limits_output(raw_sim: Callable[..., Any]) -> None:
    client = raw_sim(N1, speed=50)
    p = "$BD:00,CMD:"
    ok(client, f"{p}SET,CH:1,PAR:VSET,VAL:100", f"{p}SET,CH:1,PAR:RUP,VAL:500", prefix="#BD:00,")
    ok(client, f"{p}SET,CH:1,PAR:RDW,VAL:500", prefix="#BD:00,")
    before, _, _ = timed(client, f"{p}SET,CH:1,PAR:ON")
    poll(client, f"{p}MON,CH:1,PAR:VMON", lambda v: v == "0100.0", before)
    before, reply, _ = timed(client, f"{p}SET,CH:1,PAR:MAXV,VAL:50")
    assert reply == "#BD:00,CMD:OK"
    poll(client, f"{p}MON,CH:1,PAR:VMON", lambda v: v == "0050.0", before)
    assert client.ask(f"{p}MON,CH:1,PAR:STAT") == "#BD:00,CMD:OK,VAL:00065"  # ON, MAXV
    assert client.ask(f"{p}SET,CH:1,PAR:VSET,VAL:60") == "#BD:00,VAL:ERR"
