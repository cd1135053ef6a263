"""The stand's state machine: transitions, latching, reset only once the cause has cleared."""

from __future__ import annotations

import logging
import time

import pytest

from teststand.safety import StandState, StateError, StateMachine
from teststand.safety.state import Transition, parse_state


def ready() -> StateMachine:
    machine = StateMachine()
    machine.request("init", "ioc", "connected")
    machine.request(StandState.READY, "alice@host:1", "prepare")
    return machine


def test_the_normal_path_is_logged_with_who_and_why(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "teststand.safety.state")
    machine = ready()
    assert not machine.hv_allowed
    machine.request("RUN", "alice@host:1", "iv_scan")
    assert machine.hv_allowed
    machine.request("READY", "alice@host:1", "the plan ended")
    assert [(t.old, t.new) for t in machine.history] == [
        (StandState.OFF, StandState.INIT),
        (StandState.INIT, StandState.READY),
        (StandState.READY, StandState.RUN),
        (StandState.RUN, StandState.READY),
    ]
    assert "READY -> RUN by alice@host:1: iv_scan" in caplog.text


@pytest.mark.parametrize(
    ("start", "target", "fragment"),
    [
        ("INIT", "RUN", "INIT -> RUN is not a transition; from here: OFF, READY"),
        ("READY", "SAFE", "entered by the watchdog or an E-stop"),
        ("READY", "sleep", "unknown stand state 'sleep'"),
    ],
)
def test_refused_transitions_say_what_is_possible(start: str, target: str, fragment: str) -> None:
    machine = ready() if start == "READY" else StateMachine()
    if start == "INIT":
        machine.request("INIT", "ioc", "connected")
    with pytest.raises(StateError, match=fragment):
        machine.request(target, "bob", "why not")


def test_safe_is_latched_and_keeps_its_first_reason() -> None:
    machine = ready()
    machine.request("RUN", "alice", "iv")
    assert machine.trip(StandState.SAFE, "watchdog", "the coldbox lid is open") is not None
    assert machine.trip(StandState.SAFE, "watchdog", "dew point") is None
    assert machine.reason == "the coldbox lid is open"
    with pytest.raises(StateError, match=r"the stand is SAFE \(the coldbox lid is open\)"):
        machine.request("READY", "alice", "go on")
    assert machine.trip(StandState.ERROR, "watchdog", "lost link to hv") is not None
    assert machine.state is StandState.ERROR


def test_reset_refused_while_the_cause_persists_and_accepted_after(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "teststand.safety.state")
    machine = ready()
    machine.trip(StandState.SAFE, "watchdog", "the coldbox lid is open")
    causes = ["the coldbox lid is open", "dew point margin 1.0 K"]
    with pytest.raises(StateError) as refused:
        machine.reset("alice", "lid closed", causes)
    assert str(refused.value) == (
        "reset refused: the cause persists: the coldbox lid is open; dew point margin 1.0 K; "
        "clear it and reset again"
    )
    assert machine.state is StandState.SAFE
    assert "reset by alice refused: the coldbox lid is open; dew point margin 1.0 K" in [
        record.getMessage() for record in caplog.records
    ]
    transition = machine.reset("alice", "lid closed", [])
    assert transition.new is StandState.INIT
    assert "SAFE -> INIT by alice: reset: lid closed" in caplog.text
    with pytest.raises(StateError, match="nothing to reset"):
        machine.reset("alice", "again", [])


def test_listeners_see_every_transition() -> None:
    machine = StateMachine()
    seen: list[str] = []
    machine.subscribe(lambda t: seen.append(f"{t.new}:{t.who}"))
    machine.request("INIT", "ioc", "connected")
    machine.trip(StandState.ERROR, "watchdog", "lost link")
    assert seen == ["INIT:ioc", "ERROR:watchdog"]


def test_a_new_machine_is_off_not_connected_and_keeps_the_last_thousand_transitions() -> None:
    machine = StateMachine()
    assert (machine.state, machine.reason, list(machine.history)) == (
        StandState.OFF,
        "not connected",
        [],
    )
    machine.request("INIT", "ioc", "connected")
    for n in range(1000):
        machine.request("READY" if machine.state is StandState.INIT else "INIT", "ioc", f"{n}")
    assert len(machine.history) == 1000
    assert machine.history[0].why == "0" and machine.history[-1].why == "999"


def test_each_transition_is_logged_once_as_a_line_with_time_who_and_why(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A latched state is a warning, the others information; the line's time is the moment of
    the transition, in local time."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        caplog.set_level(logging.INFO, "teststand.safety.state")
        machine = StateMachine()
        before = time.time()
        transition = machine.request("INIT", "ioc", "connected")
        assert before <= transition.time <= time.time()
        machine.trip(StandState.SAFE, "watchdog", "the coldbox lid is open")
        records = [(r.levelname, r.getMessage()) for r in caplog.records]
        stamps = [time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t.time)) for t in machine.history]
        assert records == [
            ("INFO", f"stand state {stamps[0]} OFF -> INIT by ioc: connected"),
            (
                "WARNING",
                f"stand state {stamps[1]} INIT -> SAFE by watchdog: the coldbox lid is open",
            ),
        ]
        assert str(Transition(0.0, StandState.RUN, StandState.SAFE, "w", "lid")) == (
            "1970-01-01T00:00:00 RUN -> SAFE by w: lid"
        )
    finally:
        monkeypatch.undo()
        time.tzset()


def test_a_failing_listener_is_logged_and_the_others_still_hear(
    caplog: pytest.LogCaptureFixture,
) -> None:
    machine = StateMachine()
    heard: list[str] = []

    def broken(transition: Transition) -> None:
        raise RuntimeError("listener bug")

    machine.subscribe(broken)
    machine.subscribe(lambda t: heard.append(str(t.new)))
    transition = machine.request("INIT", "ioc", "connected")
    assert heard == ["INIT"]
    failed = [r for r in caplog.records if r.exc_info]
    assert [r.getMessage() for r in failed] == [f"state listener failed on {transition}"]
    assert failed[0].exc_info is not None and str(failed[0].exc_info[1]) == "listener bug"


def test_trip_and_parse_say_what_is_possible() -> None:
    with pytest.raises(StateError) as trip:
        StateMachine().trip(StandState.READY, "watchdog", "why")
    assert str(trip.value) == "trip goes to SAFE or ERROR, not READY"
    with pytest.raises(StateError) as unknown:
        parse_state("sleep")
    assert str(unknown.value) == (
        "unknown stand state 'sleep'; states: OFF, INIT, READY, RUN, SAFE, ERROR"
    )
