"""The stand's state machine: transitions, latching, reset only once the cause has cleared."""

from __future__ import annotations

import logging

import pytest

from teststand.safety import StandState, StateError, StateMachine


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
