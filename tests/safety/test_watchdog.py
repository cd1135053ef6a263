"""The interlock watchdog on the simulated stand's real devices over ptys (one process)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pytest
from bluesky import RunEngine
from helpers import run
from safety_helpers import History, wait_until

from teststand.safety import StandState, StateError, Watchdog
from teststand.stand import TestStand

Guarded = Callable[..., tuple[TestStand, Watchdog]]
WHO = "tester@localhost:1"


def to_run(RE: RunEngine, watchdog: Watchdog) -> None:
    watchdog.client.claim(WHO)
    watchdog.client.report("running")
    run(RE, lambda: watchdog.request("READY", WHO, "prepare"))
    run(RE, lambda: watchdog.request("RUN", WHO, "test"))


def power(RE: RunEngine, stand: TestStand, volts: float, channels: range = range(8)) -> None:
    """LV on, then every channel on and ramped to `volts` (sim ramps are fast)."""
    caen = stand.instruments["hv"].client  # type: ignore[attr-defined]
    for name in ("lv1", "lv2"):
        run(RE, lambda n=name: stand.instruments[n].client.set_master(True))  # type: ignore[attr-defined]

    async def up() -> None:
        for ch in channels:
            await caen.on(ch)
            await caen.set("VSET", ch, volts)

    run(RE, up)


def test_lid_opened_in_run(
    RE: RunEngine, guarded: Guarded, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "teststand.safety")
    stand, watchdog = guarded()
    assert watchdog.machine.state is StandState.INIT
    to_run(RE, watchdog)
    power(RE, stand, 300.0)
    sims = stand.simulators
    assert sims is not None
    history = History(sims)
    wait_until(lambda: history.sample().hv_max > 295, 10, "HV at 300 V")
    sims["coldbox"].instrument.open_lid()  # type: ignore[attr-defined]
    wait_until(lambda: watchdog.machine.state is StandState.SAFE, 2, "SAFE after the lid opened")
    assert "the coldbox lid is open" in watchdog.machine.reason
    wait_until(lambda: watchdog.outcome is not None, 10, "the safe action done")
    wait_until(lambda: not history.sample().lv_on, 2, "LV off in the simulators")
    samples = history.stop()
    outcome = watchdog.outcome
    assert outcome is not None and outcome.problems == []
    assert outcome.hv_safe is not None and outcome.lv_off is not None
    assert outcome.lv_off >= outcome.hv_safe
    # The simulators' history: LV went off only with every channel below 2 V; cooling safe.
    assert all(s.hv_max < 2.0 for s in samples if not s.lv_on)
    assert samples[-1].hv_max < 2.0 and not samples[-1].lv_on
    assert samples[-1].chiller_setpoint == 20.0
    assert samples[-1].tec_setpoints == [20.0] * 8
    with pytest.raises(StateError, match="the cause persists: the coldbox lid is open"):
        run(RE, lambda: watchdog.reset(WHO, "lid closed?"))
    assert "reset by tester@localhost:1 refused" in caplog.text
    sims["coldbox"].instrument.close_lid()  # type: ignore[attr-defined]
    transition = run(RE, lambda: watchdog.reset(WHO, "lid closed"))
    assert transition.new is StandState.INIT
    assert "SAFE -> INIT by tester@localhost:1: reset: lid closed" in caplog.text


def test_hv_raised_outside_run_is_brought_down(RE: RunEngine, guarded: Guarded) -> None:
    stand, watchdog = guarded()
    power(RE, stand, 100.0, range(2))  # in INIT: nobody asked for RUN
    wait_until(lambda: watchdog.machine.state is StandState.SAFE, 3, "SAFE")
    assert "HV raised outside RUN" in watchdog.machine.reason
    wait_until(lambda: watchdog.outcome is not None, 10, "the safe action done")
    assert watchdog.outcome is not None and watchdog.outcome.hv_safe is not None


def test_ready_and_run_are_refused_while_a_condition_holds(RE: RunEngine, guarded: Guarded) -> None:
    stand, watchdog = guarded()
    assert stand.simulators is not None
    stand.simulators["coldbox"].instrument.set_flow_failure(True)  # type: ignore[attr-defined]
    run(RE, lambda: stand.instruments["coldbox"].client.set_valve(True))  # type: ignore[attr-defined]
    watchdog.client.claim(WHO)
    with pytest.raises(StateError, match=r"dry-air flow lost: 0\.0 l/min with the valve open"):
        run(RE, lambda: watchdog.request("READY", WHO, "prepare"))
    assert watchdog.machine.state is StandState.SAFE


def test_lost_link_to_the_coldbox_is_an_error(RE: RunEngine, guarded: Guarded) -> None:
    stand, watchdog = guarded(link_timeout=1.0)
    to_run(RE, watchdog)
    power(RE, stand, 200.0, range(2))
    assert stand.simulators is not None
    stand.simulators["coldbox"].set_faults("hang")
    wait_until(lambda: watchdog.machine.state is StandState.ERROR, 6, "ERROR")
    assert "lost link to coldbox" in watchdog.machine.reason
    wait_until(lambda: watchdog.outcome is not None, 10, "the safe action done")
    outcome = watchdog.outcome
    assert outcome is not None and outcome.hv_safe is not None and outcome.lv_off is not None
    assert any("coldbox: safe state failed" in p for p in outcome.problems)


def test_a_client_that_stops_beating_in_run_is_seen_whenever_it_stops(
    RE: RunEngine, guarded: Guarded
) -> None:
    """Quiet in READY for longer than its timeout, the client still enters RUN (its request is a
    sign of life); it beats for several timeouts; when it stops, HV goes to 0 V and the stand
    SAFE within the timeout (+ margin), the reason naming it."""
    stand, watchdog = guarded(heartbeat_timeout=2.0)
    watchdog.client.claim(WHO)
    run(RE, lambda: watchdog.request("READY", WHO, "prepare"))
    time.sleep(3.0)
    run(RE, lambda: watchdog.request("RUN", WHO, "test"))
    power(RE, stand, 100.0, range(2))
    for _ in range(20):  # 6 s of beats, three timeouts
        RE.loop.call_soon_threadsafe(watchdog.client.heartbeat)
        time.sleep(0.3)
        assert watchdog.machine.state is StandState.RUN, watchdog.machine.reason
    stopped = time.monotonic()
    wait_until(lambda: watchdog.machine.state is StandState.SAFE, 15, "SAFE")
    assert time.monotonic() - stopped > 1.5  # the last beat went 0.3 s before `stopped`
    assert f"the controlling client {WHO} sent no heartbeat for" in watchdog.machine.reason
    wait_until(lambda: watchdog.outcome is not None, 10, "the safe action done")
    assert watchdog.outcome is not None and watchdog.outcome.hv_safe is not None


def test_estop(RE: RunEngine, guarded: Guarded) -> None:
    _, watchdog = guarded()
    to_run(RE, watchdog)
    watchdog.client.estop(True, "panel")
    watchdog.poke()
    wait_until(lambda: watchdog.machine.state is StandState.SAFE, 2, "SAFE")
    assert watchdog.machine.reason == "E-stop pressed by panel"
    wait_until(lambda: not watchdog.acting, 10, "the safe action done")
    with pytest.raises(StateError, match="E-stop pressed by panel"):
        run(RE, lambda: watchdog.reset(WHO, "try"))
    watchdog.client.estop(False, "panel")
    run(RE, lambda: watchdog.reset(WHO, "released"))
    assert watchdog.machine.state is StandState.INIT


def test_the_safe_set_point_is_checked_against_the_box_at_start(RE: RunEngine) -> None:
    from safety_helpers import safety_stand_dict

    from teststand.config import ConfigError
    from teststand.stand import build

    data = safety_stand_dict(lab_dew_point_max=-20)
    data["interlocks"]["cooling"] = {"action": "setpoint", "setpoint": 10}
    stand = build(data)  # the box's air: dew point 9 °C at power-up
    try:
        with pytest.raises(ConfigError, match=r"interlocks.cooling.setpoint: 10 °C is below"):
            run(RE, Watchdog(stand).start)
    finally:
        run(RE, stand.close)
