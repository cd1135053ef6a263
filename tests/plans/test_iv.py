"""IV scans on the simulated stand: data, compliance, and 0 V on every exit path."""

from __future__ import annotations

import os
import re
import signal
import threading
from collections.abc import Callable
from typing import Any

import pytest
from bluesky import RunEngine
from bluesky.utils import RunEngineInterrupted
from helpers import run, stand_dict

from teststand.plans import PlanArgumentError, hv_off, hv_ramp, iv_scan, keithley_iv_scan
from teststand.plans.iv import check_points, check_range
from teststand.stand import TestStand


def vmon(stand: TestStand) -> dict[int, float]:
    """Each slot's HV as the simulator has it, by slot number."""
    assert stand.simulators is not None
    channels = stand.simulators["hv"].instrument.snapshot()["channels"]  # type: ignore[attr-defined]
    return {n: abs(channels[slot.hv.channel]["vmon"]) for n, slot in stand.config.slots.items()}


def hv_commands(stand: TestStand) -> int:
    assert stand.simulators is not None
    return stand.simulators["hv"].server.commands


class Documents:
    """Collects a run's documents; `on_event(n, action)` runs `action` at the n-th event."""

    def __init__(self) -> None:
        self.docs: list[tuple[str, dict[str, Any]]] = []
        self.actions: dict[int, Callable[[], None]] = {}

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        self.docs.append((name, doc))
        count = sum(1 for n, _ in self.docs if n == "event")
        if name == "event" and count in self.actions:
            self.actions.pop(count)()

    def of(self, name: str) -> list[dict[str, Any]]:
        return [doc for n, doc in self.docs if n == name]

    def primary(self) -> list[dict[str, Any]]:
        descriptors = {d["uid"] for d in self.of("descriptor") if d["name"] == "primary"}
        return [e for e in self.of("event") if e["descriptor"] in descriptors]


def pause_from_thread(RE: RunEngine) -> Callable[[], None]:
    """What a second thread (a GUI, the queue server) does: request a pause while a plan runs."""
    return lambda: threading.Thread(target=RE.request_pause).start()


def scan_acting_in_settles(
    RE: RunEngine, stand: TestStand, actions: dict[int, Callable[[], object]], **scan: Any
) -> None:
    """Run `iv_scan(stand, **scan)`; as its n-th settle (`sleep`) begins, `actions[n]` runs on
    the HV simulator's loop (a fault at the supply while the point settles)."""
    assert stand.simulators is not None
    hv = stand.simulators["hv"]
    sleeps = 0

    def hook(msg: Any) -> None:
        nonlocal sleeps
        if msg.command == "sleep":
            sleeps += 1
            if sleeps in actions:
                hv.host.call(actions.pop(sleeps))

    RE.msg_hook = hook
    try:
        RE(iv_scan(stand, **scan))
    finally:
        RE.msg_hook = None


def states_of_slots_1_and_3(docs: Documents) -> list[tuple[float, str, str]]:
    """(voltage, slot 1's state, slot 3's state) of each point."""
    return [
        (e["data"]["iv_voltage"], e["data"]["iv-slot1_state"], e["data"]["iv-slot3_state"])
        for e in docs.primary()
    ]


@pytest.fixture
def docs(RE: RunEngine) -> Documents:
    collected = Documents()
    RE.subscribe(collected)
    return collected


def test_scan_steps_all_slots_and_ends_at_zero(RE: RunEngine, stand: TestStand, docs: Documents):
    uid = RE(
        iv_scan(stand, [1, 3, 4], stop=60, step=10, settle=0, stage="INITIAL_WARM")
    ).plan_result
    start = docs.of("start")[0]
    assert start["uid"] == uid
    assert start["module_ids"] == ["20UPGM22110001", "20UPGM22110003", "20UPIMS2110004"]
    assert start["slots"]["4"]["sensor"] == "3d"
    assert start["iv_keys"]["3"]["current"] == "slot3-leakage_current"
    assert start["stage"] == "INITIAL_WARM"
    assert {"stand", "operator", "versions", "iv"} <= set(start)
    events = docs.primary()
    assert [e["data"]["iv_voltage"] for e in events] == [0, 10, 20, 30, 40, 50, 60]
    last = events[-1]["data"]
    assert last["slot3"] == pytest.approx(60, abs=2)
    assert last["iv-slot3_state"] == "measuring"
    assert 0 < last["slot1-leakage_current"] < 10e-6
    assert docs.of("stop")[0]["exit_status"] == "success"
    baseline = [d for d in docs.of("descriptor") if d["name"] == "baseline"]
    assert "hv" in baseline[0]["configuration"]
    assert all(v < 2 for v in vmon(stand).values())


def test_compliance_stops_only_that_slot(RE: RunEngine, stand: TestStand, docs: Documents):
    # slot 6 leaks 30 µA: with 20 µA compliance it stops at once and ramps down
    RE(iv_scan(stand, [1, 6], stop=40, step=10, settle=0, compliance=20e-6))
    events = docs.primary()
    states = [e["data"]["iv-slot6_state"] for e in events]
    first = states.index("compliance")
    assert first > 0 and set(states[:first]) == {"measuring"}
    assert set(states[first:]) == {"compliance"}
    assert events[-1]["data"]["slot1"] == pytest.approx(40, abs=2)
    assert events[-1]["data"]["slot6"] < 20
    assert all(v < 2 for v in vmon(stand).values())


def test_breakdown_stop(RE: RunEngine, stand: TestStand, docs: Documents):
    # slot 3's sensor breaks down at 120 V
    RE(iv_scan(stand, [3], start=80, stop=200, step=5, settle=0, stop_at_breakdown=True))
    stopped = [(e["data"]["iv_voltage"], e["data"]["iv-slot3_state"]) for e in docs.primary()]
    # the simulated sensor breaks down at 120 V; the 110 V point already shows the jump
    assert stopped == [(v, "measuring") for v in range(80, 115, 5)] + [(110, "breakdown")]
    assert vmon(stand)[3] < 2


def test_exception_mid_scan_ends_at_zero(RE: RunEngine, stand: TestStand, docs: Documents):
    def fail() -> None:
        raise RuntimeError("analysis crashed")

    docs.actions[4] = fail
    with pytest.raises(RuntimeError, match="analysis crashed"):
        RE(iv_scan(stand, [1, 2], stop=100, step=10, settle=0))
    assert docs.of("stop")[0]["exit_status"] == "fail"
    assert all(v < 2 for v in vmon(stand).values())


def test_pause_then_abort_ends_at_zero(RE: RunEngine, stand: TestStand, docs: Documents):
    docs.actions[4] = pause_from_thread(RE)
    with pytest.raises(RunEngineInterrupted):
        RE(iv_scan(stand, [1, 2], stop=100, step=10, settle=0))
    assert RE.state == "paused"
    assert max(vmon(stand)[1], vmon(stand)[2]) >= 10  # paused with HV up
    RE.abort("operator abort")
    assert docs.of("stop")[0]["exit_status"] == "abort"
    assert all(v < 2 for v in vmon(stand).values())


def test_ctrl_c_then_abort_ends_at_zero(RE: RunEngine, stand: TestStand, docs: Documents):
    assert threading.current_thread() is threading.main_thread()
    docs.actions[3] = lambda: os.kill(os.getpid(), signal.SIGINT)
    with pytest.raises(RunEngineInterrupted):
        RE(iv_scan(stand, [1, 2], stop=100, step=10, settle=0))
    RE.abort()
    assert docs.of("stop")[0]["exit_status"] == "abort"
    assert all(v < 2 for v in vmon(stand).values())


def test_stop_request_ends_at_zero(RE: RunEngine, stand: TestStand, docs: Documents):
    docs.actions[3] = pause_from_thread(RE)
    with pytest.raises(RunEngineInterrupted):
        RE(iv_scan(stand, [5], stop=100, step=10, settle=0))
    RE.stop()
    assert docs.of("stop")[0]["exit_status"] == "success"
    assert vmon(stand)[5] < 2


def test_resume_after_pause_completes(RE: RunEngine, stand: TestStand, docs: Documents):
    docs.actions[3] = pause_from_thread(RE)
    with pytest.raises(RunEngineInterrupted):
        RE(iv_scan(stand, [7], stop=50, step=10, settle=0))
    RE.resume()
    voltages = [e["data"]["iv_voltage"] for e in docs.primary()]
    assert voltages[-1] == 50
    assert vmon(stand)[7] < 2


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"slots": [1], "stop": 300}, "above its 250 V limit"),
        ({"slots": [4], "stop": 150}, "above its 120 V limit"),
        ({"slots": [1], "step": 0}, "non-zero step"),
        ({"slots": [1], "step": -5}, "flip its sign"),
        ({"slots": [9]}, "unknown slot"),
        ({"slots": "1-3,x"}, "numbers and ranges"),
        ({"slots": [1], "compliance": 1e-3}, "stand's limit"),
        ({"slots": [1], "compliance": 0}, r"compliance 0 A: give a current in \(0, "),
        ({"slots": [1], "stop": -100}, "magnitudes"),
        ({"slots": [1], "stage": "WARM"}, "stage"),
    ],
)
def test_bad_arguments_refused_before_hardware(
    RE: RunEngine, stand: TestStand, arguments: dict[str, Any], message: str
):
    before = hv_commands(stand)
    with pytest.raises(ValueError, match=message):
        RE(iv_scan(stand, **arguments))
    assert hv_commands(stand) == before


def test_missing_module_id_refused(RE: RunEngine, make_stand: Callable[..., TestStand]):
    slots = stand_dict()["slots"]
    slots[2].pop("module")
    bare = make_stand(slots=slots)
    before = hv_commands(bare)
    with pytest.raises(PlanArgumentError, match="hold no module"):
        RE(iv_scan(bare, [1, 2]))
    assert hv_commands(bare) == before


def test_keithley_variant(RE: RunEngine, stand: TestStand, docs: Documents):
    uid = RE(keithley_iv_scan(stand, 1, stop=40, step=10, settle=0)).plan_result
    start = docs.of("start")[0]
    assert start["uid"] == uid and start["module_id"] == "20UPGM22110001"
    assert start["iv_keys"]["1"]["current"] == stand.smu.current.name  # type: ignore[attr-defined]
    events = docs.primary()
    bias = start["iv_keys"]["1"]["bias"]
    assert [round(-e["data"][bias]) for e in events] == [0, 10, 20, 30, 40]
    assert events[-1]["data"]["iv-slot1_state"] == "measuring"
    assert stand.simulators is not None
    smu = stand.simulators["smu"].instrument.snapshot()  # type: ignore[attr-defined]
    assert not smu["output"]


def smu_state(stand: TestStand) -> tuple[bool, float]:
    """The SMU simulator's output switch and source level (V)."""
    assert stand.simulators is not None
    smu = stand.simulators["smu"].instrument.snapshot()  # type: ignore[attr-defined]
    return smu["output"], smu["level"]


@pytest.mark.parametrize("end", ["abort", "stop", "exception"])
def test_keithley_scan_ends_at_zero_and_off_whatever_way(
    RE: RunEngine, stand: TestStand, docs: Documents, end: str
):
    def fail() -> None:
        raise RuntimeError("analysis crashed")

    docs.actions[3] = fail if end == "exception" else pause_from_thread(RE)
    with pytest.raises(RuntimeError if end == "exception" else RunEngineInterrupted):
        RE(keithley_iv_scan(stand, 1, stop=100, step=10, settle=0))
    if end != "exception":
        output, level = smu_state(stand)
        assert output and level <= -10  # paused with the module biased
        getattr(RE, end)()
    assert docs.of("stop")[0]["exit_status"] == {"abort": "abort", "stop": "success"}.get(
        end, "fail"
    )
    assert smu_state(stand) == (False, 0.0)


def test_trip_during_scan_is_compliance(
    RE: RunEngine, stand: TestStand, docs: Documents, caplog: pytest.LogCaptureFixture
):
    # slot 6 leaks 30 µA; its channel trips at once at 20 µA (TRIP 0 s), below the plan's
    # compliance (the stand's 100 µA), so it is the supply that stops it, not the plan
    channel = stand.slots[6].hv_channel
    run(RE, lambda: channel.current_limit.set(20e-6))
    run(RE, lambda: channel.trip_time.set(0))
    RE(iv_scan(stand, [1, 6], stop=60, step=10, settle=0))
    events = docs.primary()
    states = [e["data"]["iv-slot6_state"] for e in events]
    first = states.index("compliance")
    assert first > 0 and set(states[:first]) == {"measuring"}
    assert set(states[first:]) == {"compliance"}
    assert events[-1]["data"]["iv_voltage"] == 60  # slot 1 went on to the end
    assert any(
        re.fullmatch(r"slot 6 tripped on the way to \d+ V: TRIP", m) for m in caplog.messages
    )
    assert all(v < 2 for v in vmon(stand).values())


def test_a_channel_stuck_on_the_way_stops_its_slot_as_an_error(
    RE: RunEngine, stand: TestStand, docs: Documents, caplog: pytest.LogCaptureFixture
):
    # slot 6's output stage fails at 0 V: its first step never arrives, with no trip and no
    # current limit, so the slot stops as "error" at its ramp timeout; slot 1 goes on
    channel = stand.slots[6].hv_channel
    channel.movable_logic.margin = 1.0  # the ramp timeout's fixed margin: 1 s, not 10 s
    assert stand.simulators is not None
    supply = stand.simulators["hv"].instrument
    supply.stick(stand.config.slots[6].hv.channel)  # type: ignore[attr-defined]
    RE(iv_scan(stand, [1, 6], stop=30, step=10, settle=0))
    events = docs.primary()
    states = [e["data"]["iv-slot6_state"] for e in events]
    assert states[0] == "measuring" and set(states[1:]) == {"error"}  # 0 V: where it is stuck
    assert events[-1]["data"]["iv_voltage"] == 30 and "iv-slot1_state" in events[-1]["data"]
    assert f"slot 6 stopped on the way to 10 V: {channel.name}: ramp to 10" in caplog.text


def test_a_channel_held_at_its_current_limit_on_the_way_stops_its_slot_as_compliance(
    RE: RunEngine, stand: TestStand, docs: Documents, caplog: pytest.LogCaptureFixture
):
    # slot 6 leaks 30 µA at 60 V, 20 µA at about 22 V; its channel limits the current at 20 µA
    # and never trips (TRIP 1000 s: infinite), so it is held short of 30 V (OVC, no fault): the
    # slot stops there as "compliance", said as stopped, not tripped; slot 1 goes on to the end
    channel = stand.slots[6].hv_channel
    channel.movable_logic.margin = 1.0  # the ramp timeout's fixed margin: 1 s, not 10 s
    run(RE, lambda: channel.current_limit.set(20e-6))
    run(RE, lambda: channel.trip_time.set(1000))
    RE(iv_scan(stand, [1, 6], stop=40, step=10, settle=0))
    events = docs.primary()
    states = [(e["data"]["iv_voltage"], e["data"]["iv-slot6_state"]) for e in events]
    assert states[:4] == [
        (0, "measuring"),
        (10, "measuring"),
        (20, "measuring"),
        (30, "compliance"),
    ]
    assert {state for _, state in states[4:]} <= {"compliance"}
    assert events[-1]["data"]["iv_voltage"] == 40 and "iv-slot1_state" in events[-1]["data"]
    stopped = rf"slot 6 stopped on the way to 30 V: {channel.name}: ramp to 30.0 V timed out at "
    assert any(re.match(stopped + r"2\d\.\d V", m) for m in caplog.messages), caplog.messages
    assert all(v < 2 for v in vmon(stand).values())


def test_a_channel_held_at_its_current_limit_at_a_point_stops_its_slot_as_compliance(
    RE: RunEngine, stand: TestStand, docs: Documents, caplog: pytest.LogCaptureFixture
):
    """During the settle of the 20 V point slot 1's current limit drops below its leakage (no
    trip: TRIP 1000 s is infinite): its channel, on and without a fault, is held there (OVC),
    so the point is "compliance" and the slot stops; slot 3 goes on."""
    assert stand.simulators is not None
    instrument: Any = stand.simulators["hv"].instrument
    run(RE, lambda: stand.slots[1].hv_channel.trip_time.set(1000))
    lower_the_limit = {3: lambda: instrument.respond("$CMD:SET,CH:0,PAR:ISET,VAL:0.05")}
    scan_acting_in_settles(RE, stand, lower_the_limit, slots=[1, 3], stop=40, step=10, settle=0.2)
    rows = states_of_slots_1_and_3(docs)
    assert rows[:3] == [
        (0, "measuring", "measuring"),
        (10, "measuring", "measuring"),
        (20, "compliance", "measuring"),
    ], rows
    assert {s1 for _, s1, _ in rows[3:]} == {"compliance"} and rows[-1][0] == 40, rows
    assert "slot 1 reached its channel's current limit at 20 V" in caplog.messages
    assert all(v < 2 for v in vmon(stand).values())


def test_a_point_that_tripped_or_did_not_settle_is_marked(
    RE: RunEngine, stand: TestStand, docs: Documents, caplog: pytest.LogCaptureFixture
):
    """During the settle of the 20 V point slot 1's set point is pulled to 5 V (it reads far
    from 20 V: unsettled, the scan goes on); during the 30 V settle slot 3's channel trips (it
    ramps down: that point is the trip, no valid point). The analysis sees neither."""
    from teststand.callbacks.iv_analysis import IVAnalysis

    assert stand.simulators is not None
    instrument: Any = stand.simulators["hv"].instrument
    actions: dict[int, Callable[[], object]] = {
        3: lambda: instrument.respond("$CMD:SET,CH:0,PAR:VSET,VAL:5"),
        4: lambda: instrument.trip(2),
    }
    analysis = IVAnalysis()
    RE.subscribe(analysis)
    scan_acting_in_settles(RE, stand, actions, slots=[1, 3], stop=50, step=10, settle=0.1)
    rows = states_of_slots_1_and_3(docs)
    assert rows[:6] == [
        (0, "measuring", "measuring"),
        (10, "measuring", "measuring"),
        (20, "unsettled", "measuring"),
        (30, "measuring", "compliance"),
        (40, "measuring", "compliance"),
        (50, "measuring", "compliance"),
    ], rows
    assert "slot 3 tripped at 30 V: TRIP" in caplog.messages
    unsettled = r"slot 1 had not settled at 20 V \(read \d+\.\d V\): point marked unsettled"
    assert any(re.fullmatch(unsettled, m) for m in caplog.messages), caplog.messages
    assert "is OFF" not in caplog.text
    assert analysis.results[3].max_voltage == 20 and analysis.results[3].stop_reason == "compliance"
    assert analysis.results[1].max_voltage == 50
    assert all(v < 2 for v in vmon(stand).values())


def test_the_status_line_shows_point_voltage_and_settle_countdown(
    RE: RunEngine, stand: TestStand
) -> None:
    """On a terminal the point, its voltage and the settle countdown stay on one line below the
    table; each table row erases it first (no garbled rows); it is gone when the scan ends."""
    import io

    from teststand.callbacks.display import RunTable
    from teststand.callbacks.progress import CLEAR_BELOW, StatusLine, progress

    out = io.StringIO()
    status = StatusLine(out, tick=0.1)
    progress.listeners.append(status)
    RE.subscribe(RunTable(out, terminal=True))
    try:
        RE(iv_scan(stand, [1], stop=20, step=10, settle=0.35))
    finally:
        progress.listeners.remove(status)
    text = out.getvalue()
    assert "iv_scan · point 2/3 · 10 V" in text
    counts = re.findall(r"point 3/3 · 20 V · settling (\d) s left", text)
    assert len(counts) >= 2, text  # redrawn while it counts down
    rows = [line for line in text.split("\n") if re.search(r"\|\s+\d+ \|", line)]
    assert rows and all(row.startswith(CLEAR_BELOW) for row in rows), rows
    assert text.endswith(CLEAR_BELOW) and progress.current.plan == ""


def test_the_start_document_says_who_ran_what_on_which_modules_with_which_versions(
    RE: RunEngine, stand: TestStand, docs: Documents, monkeypatch: pytest.MonkeyPatch
):
    import platform

    import bluesky
    import ophyd_async

    import teststand

    monkeypatch.setenv("TESTSTAND_OPERATOR", "olga")
    RE(iv_scan(stand, [1, 4], stop=10, step=10, settle=0, md={"note": "after the repair"}))
    start = docs.of("start")[0]
    assert start["operator"] == "olga" and start["note"] == "after the repair"
    assert start["versions"] == {
        "teststand": teststand.__version__,
        "bluesky": bluesky.__version__,
        "ophyd_async": ophyd_async.__version__,
        "python": platform.python_version(),
    }
    assert start["slots"]["1"] == {
        "module_id": "20UPGM22110001",
        "sensor": "planar",
        "area_cm2": 15.92,
        "max_bias": 250.0,
        "hv_channel": "hv:0",
        "layer": "L2",
    }
    assert (start["slots"]["4"]["hv_channel"], start["slots"]["4"]["layer"]) == ("hv:3", "L0")


def test_a_slot_without_a_module_has_no_module_information(
    make_stand: Callable[..., TestStand],
) -> None:
    from teststand.plans.common import slot_info

    slots = stand_dict()["slots"]
    slots[2].pop("module")
    bare = make_stand(slots=slots)
    with pytest.raises(PlanArgumentError) as info:
        slot_info(bare, bare.slots[2])
    assert str(info.value) == "slot 2 holds no module"


def test_a_breakdown_is_seen_from_the_second_point(
    RE: RunEngine, stand: TestStand, docs: Documents
):
    # slot 3's sensor breaks down at 120 V and the 110 V point shows the jump: from 105 V, the
    # scan's second point is the first with a point before it to compare with
    RE(iv_scan(stand, [3], start=105, stop=200, step=5, settle=0, stop_at_breakdown=True))
    stopped = [(e["data"]["iv_voltage"], e["data"]["iv-slot3_state"]) for e in docs.primary()]
    assert stopped == [(105, "measuring"), (110, "measuring"), (110, "breakdown")]
    assert vmon(stand)[3] < 2


def test_a_channel_switched_off_at_a_point_stops_its_slot_as_an_error(
    RE: RunEngine, stand: TestStand, docs: Documents, caplog: pytest.LogCaptureFixture
):
    """During the settle of the 20 V point slot 1's channel is switched off at the supply (no
    trip, no fault): that point is not valid ("error", said as switched off); slot 3 goes on."""
    assert stand.simulators is not None
    instrument: Any = stand.simulators["hv"].instrument
    switch_off = {3: lambda: instrument.respond("$CMD:SET,CH:0,PAR:OFF")}
    scan_acting_in_settles(RE, stand, switch_off, slots=[1, 3], stop=40, step=10, settle=0.2)
    rows = states_of_slots_1_and_3(docs)
    assert rows[:3] == [
        (0, "measuring", "measuring"),
        (10, "measuring", "measuring"),
        (20, "error", "measuring"),
    ], rows
    assert {s1 for _, s1, _ in rows[3:]} == {"error"} and rows[-1][0] == 40, rows
    assert "slot 1 tripped at 20 V: switched off" in caplog.messages
    assert all(v < 2 for v in vmon(stand).values())


def test_each_steps_timeout_is_the_largest_steps_from_0_v_included(
    RE: RunEngine, stand: TestStand
) -> None:
    """`check_range` gives every step the time its channel may take for the scan's largest
    step, the one from 0 V to the first point included (a step's timeout, too short, fails a
    good ramp; too long, detects a stuck one late)."""
    slots = [stand.slots[1], stand.slots[2]]

    async def timeouts(voltages: list[float], largest: float) -> tuple[dict[int, float], ...]:
        found: dict[int, float] = {}
        await check_range(slots, voltages, found)
        expected = {s.number: await s.hv_channel.ramp_timeout(0.0, largest) for s in slots}
        return found, expected

    for voltages, largest in (([50.0, 60.0, 70.0], 50.0), ([10.0, 20.0, 60.0], 40.0)):
        found, expected = run(RE, lambda v=voltages, top=largest: timeouts(v, top))
        assert found == expected, voltages


def test_a_rewound_point_is_checked_with_the_bias_read_now(RE: RunEngine, stand: TestStand) -> None:
    """`check_points` without a reading (a rewind interrupted the point's read) reads the bias
    itself: at its voltage the slot is not marked, far from it the point is "unsettled"."""
    slot = stand.slots[1]
    RE(hv_ramp(stand, [1], 30, rate=50))

    async def marks_at(voltage: float) -> dict[int, str]:
        marks: dict[int, Any] = {}
        await check_points([slot], voltage, None, {1: 2.0}, marks)
        return marks

    try:
        assert run(RE, lambda: marks_at(30.0)) == {}
        assert run(RE, lambda: marks_at(60.0)) == {1: "unsettled"}
    finally:
        RE(hv_off(stand, [1]))
