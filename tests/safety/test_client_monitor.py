"""What the watchdog knows of the controlling client, on a clock the test moves."""

from __future__ import annotations

import pytest
from bluesky.run_engine import RunEngineStateMachine

from teststand.safety import ClientMonitor
from teststand.safety.client import ClientError


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def monitor() -> tuple[ClientMonitor, Clock]:
    clock = Clock()
    client = ClientMonitor(heartbeat_timeout=3.0, paused_hv_hold=600.0, clock=clock)
    client.claim("alice@host:42")
    client.report("running")
    return client, clock


def test_nothing_to_say_while_the_client_lives() -> None:
    client, clock = monitor()
    for _ in range(10):
        clock.now += 1.0
        client.heartbeat()
        assert client.problems(running=True, hv_up=True) == []


def test_a_stale_heartbeat_counts_only_in_run() -> None:
    client, clock = monitor()
    clock.now += 3.5
    assert client.problems(running=False, hv_up=False) == []
    (problem,) = client.problems(running=True, hv_up=True)
    assert "sent no heartbeat for 3.5 s (interlocks.heartbeat_timeout 3 s" in problem


def test_a_closed_connection() -> None:
    client, _ = monitor()
    client.connection_lost("someone@else:1")  # not the owner: ignored
    assert client.problems(running=True, hv_up=True) == []
    client.connection_lost("alice@host:42")
    (problem,) = client.problems(running=True, hv_up=True)
    assert "alice@host:42: its connection closed (process killed?)" in problem


def test_halt_is_remembered_until_the_next_run() -> None:
    client, _ = monitor()
    client.report("halting")
    client.report("idle")  # halt over before the watchdog looked
    (problem,) = client.problems(running=True, hv_up=True)
    assert "went halting with the stand in RUN" in problem
    client.entering_run()
    assert client.problems(running=True, hv_up=True) == []


def test_a_paused_plan_may_hold_hv_for_the_configured_time() -> None:
    client, clock = monitor()
    client.report("paused")
    clock.now += 100.0
    client.heartbeat()
    assert client.pause_remaining(hv_up=True) == pytest.approx(500.0)
    assert client.pause_remaining(hv_up=False) is None
    clock.now += 501.0
    client.heartbeat()
    (problem,) = client.problems(running=True, hv_up=True)
    assert "held HV for more than 600 s (interlocks.paused_hv_hold)" in problem
    client.report("running")
    assert client.pause_remaining(hv_up=True) is None


def test_estop_counts_in_every_state() -> None:
    client, _ = monitor()
    client.estop(True, "operator panel")
    assert client.problems(running=False, hv_up=False) == ["E-stop pressed by operator panel"]
    client.estop(False, "operator panel")
    assert client.problems(running=False, hv_up=False) == []


def test_unknown_runengine_state() -> None:
    client, _ = monitor()
    with pytest.raises(ClientError, match="unknown RunEngine state 'dozing'"):
        client.report("dozing")


def test_every_state_of_the_runengine_is_known() -> None:
    """A deferred pause passes through `pausing` (refused once: the soak's log had it)."""
    client, _ = monitor()
    for state in RunEngineStateMachine.States:
        client.report(state.value)
        assert client.re_state == state.value


def test_run_without_a_controlling_client() -> None:
    client, _ = monitor()
    client.release("alice@host:42")
    assert client.problems(running=True, hv_up=False) == ["RUN without a controlling client"]


def test_entering_run_is_a_sign_of_life_and_the_age_is_judged_at_every_check() -> None:
    """A client quiet in READY (no heartbeat needed there) is not tripped as the stand enters
    RUN at its request; in RUN its heartbeat's age is judged at every check, naming it."""
    client, clock = monitor()
    clock.now += 60.0
    client.entering_run()
    assert client.problems(running=True, hv_up=True) == []
    for _ in range(20):  # beating: fine for as long as it beats
        clock.now += 1.0
        client.heartbeat()
        assert client.problems(running=True, hv_up=True) == []
    clock.now += 2.9
    assert client.problems(running=True, hv_up=True) == []
    clock.now += 0.2
    (problem,) = client.problems(running=True, hv_up=True)
    assert problem.startswith("the controlling client alice@host:42 sent no heartbeat for 3.1 s")
