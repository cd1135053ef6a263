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


def test_a_reading_is_confirmed_at_once_and_stop_ends_the_checks(
    RE: RunEngine, guarded: Guarded, caplog: pytest.LogCaptureFixture
) -> None:
    """A condition on one reading acts after one more read of that instrument, asked for at
    once (not a poll period later), every time: three lid openings in a row. Every check is
    counted and seen by each listener, a failing listener is logged; after `stop()` no check
    runs any more."""
    period = 0.5
    stand, watchdog = guarded(poll_period=period)
    assert stand.simulators is not None
    box = stand.simulators["coldbox"].instrument
    seen: dict[str, float] = {}
    counted: list[int] = []

    def failing(checked: Watchdog) -> None:
        raise RuntimeError("a broken PV update")

    def on_check(checked: Watchdog) -> None:
        now = time.monotonic()
        counted.append(checked.checks)
        if checked.pending:
            seen.setdefault("pending", now)
        if checked.machine.state is StandState.SAFE:
            seen.setdefault("safe", now)

    watchdog.on_check(failing)
    watchdog.on_check(on_check)
    delays = []
    for _ in range(3):
        seen.clear()
        box.open_lid()  # type: ignore[attr-defined]
        wait_until(lambda: "safe" in seen, 10, "SAFE after the lid opened")
        delays.append(seen["safe"] - seen["pending"])
        wait_until(lambda: not watchdog.acting, 10, "the safe action done")
        box.close_lid()  # type: ignore[attr-defined]
        run(RE, lambda: watchdog.reset(WHO, "lid closed"))
    # the next regular read of the coldbox comes a poll period after the first; one read more
    # takes a few tens of ms (the median: one slow episode on a loaded machine is forgiven)
    assert sorted(delays)[1] < 0.6 * period, delays
    assert counted == list(range(counted[0], counted[0] + len(counted)))
    assert "watchdog listener failed" in [r.getMessage() for r in caplog.records]
    run(RE, watchdog.stop)
    checks = watchdog.checks
    time.sleep(3 * period)
    assert watchdog.checks == checks, "the watchdog still checks after stop()"


def test_a_watchdog_not_started_has_made_no_checks(guarded: Guarded) -> None:
    """`checks` (the IOC's WATCHDOG:CHECKS) counts from 0: a watchdog made but not started
    shows none."""
    stand, _ = guarded()
    assert Watchdog(stand).checks == 0


def test_run_needs_a_client_in_control_and_ready_needs_hv_down(
    RE: RunEngine, guarded: Guarded
) -> None:
    stand, watchdog = guarded()
    run(RE, lambda: watchdog.request("READY", WHO, "prepare"))  # READY needs no control
    with pytest.raises(StateError) as refused:
        run(RE, lambda: watchdog.request("RUN", WHO, "test"))
    assert str(refused.value) == "RUN refused: no client holds control; take control first"
    assert watchdog.machine.state is StandState.READY
    watchdog.client.claim(WHO)
    watchdog.client.report("running")
    run(RE, lambda: watchdog.request("RUN", WHO, "test"))
    power(RE, stand, 100.0, range(2))
    wait_until(lambda: watchdog.hv_up, 10, "HV up in the watchdog's readings")
    with pytest.raises(StateError) as refused:
        run(RE, lambda: watchdog.request("READY", WHO, "done"))
    assert str(refused.value) == "READY refused: HV is still up; ramp every channel to 0 V first"
    assert watchdog.machine.state is StandState.RUN
    power(RE, stand, 0.0, range(2))
    wait_until(lambda: not watchdog.hv_up, 10, "HV down in the watchdog's readings")
    transition = run(RE, lambda: watchdog.request("READY", WHO, "done"))
    assert (transition.new, transition.who, transition.why) == (StandState.READY, WHO, "done")
    assert watchdog.machine.history[-1] is transition


def test_start_arms_the_chillers_own_watchdog_or_warns_without_one(
    RE: RunEngine, guarded: Guarded, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "teststand.safety")
    stand, _ = guarded(cooling={"action": "setpoint", "setpoint": 24}, chiller_timeout=900)
    chiller = stand.instruments["chiller"].client  # type: ignore[attr-defined]
    assert run(RE, chiller.safe_setpoint) == 24.0  # the factory's is 20 °C
    assert run(RE, chiller.communication_timeout) == 900
    assert "communication watchdog" not in caplog.text
    # a model without the communication watchdog answers ERR_3: the IOC starts, and says so
    guarded(sim={"chiller": {"communication_watchdog": False}})
    assert (
        "chiller has no communication watchdog (ERR_3): if the IOC dies, it keeps its set point "
        "until someone stops it"
    ) in [record.getMessage() for record in caplog.records]


def test_a_stand_that_stops_its_cooling_starts_without_a_set_point_to_check(
    RE: RunEngine, guarded: Guarded
) -> None:
    """`cooling: stop` has no safe set point to compare with the box's dew point: the watchdog
    starts and enters INIT, saying who and why."""
    _, watchdog = guarded(cooling={"action": "stop"})
    first = watchdog.machine.history[0]
    assert (first.old, first.new, first.who, first.why) == (
        StandState.OFF,
        StandState.INIT,
        "watchdog",
        "instruments connected",
    )


def test_stop_lets_the_safe_action_under_way_finish(RE: RunEngine, guarded: Guarded) -> None:
    stand, watchdog = guarded()
    to_run(RE, watchdog)
    power(RE, stand, 300.0, range(2))
    wait_until(lambda: watchdog.hv_up, 10, "HV up in the watchdog's readings")

    async def press_estop_and_stop() -> None:
        watchdog.client.release()
        watchdog.client.estop(True, "panel")
        watchdog.check()  # trips, and starts the safe action
        assert watchdog.acting
        last = watchdog.machine.history[-1]
        assert (last.new, last.who) == (StandState.SAFE, "watchdog")
        assert last.why == "E-stop pressed by panel; RUN without a controlling client"
        with pytest.raises(StateError) as refused:
            await watchdog.reset(WHO, "released")
        assert str(refused.value) == (
            "reset refused: the safe action is still under way; wait for it"
        )
        await watchdog.stop()

    run(RE, press_estop_and_stop)
    assert not watchdog.acting
    assert watchdog.outcome is not None and watchdog.outcome.hv_safe is not None


def test_a_module_over_its_compliance_trips_the_stand(RE: RunEngine, guarded: Guarded) -> None:
    stand, watchdog = guarded(sim={"hv": {"breakdown": [50.0] * 8}}, compliance_trip_time=0.3)
    to_run(RE, watchdog)
    caen = stand.instruments["hv"].client  # type: ignore[attr-defined]
    run(RE, lambda: caen.set("TRIP", 0, 1000.0))  # never trips: held in OVC at ISET
    power(RE, stand, 100.0, range(1))  # past its breakdown: the current runs away
    wait_until(lambda: watchdog.machine.state is StandState.SAFE, 10, "SAFE")
    assert "slot 1 (hv:0) over its compliance (0.0001 A, limits.compliance)" in (
        watchdog.machine.reason
    )
    assert "(interlocks.compliance_trip_time 0.3 s)" in watchdog.machine.reason


def test_a_paused_plan_may_hold_hv_only_so_long(RE: RunEngine, guarded: Guarded) -> None:
    stand, watchdog = guarded(paused_hv_hold=0.5)
    to_run(RE, watchdog)
    power(RE, stand, 100.0, range(1))
    wait_until(lambda: watchdog.hv_up, 10, "HV up in the watchdog's readings")
    RE.loop.call_soon_threadsafe(watchdog.client.report, "paused")
    wait_until(lambda: watchdog.machine.state is StandState.SAFE, 10, "SAFE")
    assert "a paused plan held HV for more than 0.5 s" in watchdog.machine.reason


def test_hv_raised_again_while_safe_is_brought_down_again(
    RE: RunEngine, guarded: Guarded, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "teststand.safety")
    stand, watchdog = guarded()
    watchdog.client.estop(True, "panel")
    watchdog.poke()
    wait_until(lambda: watchdog.outcome is not None, 10, "the safe action done")
    first = watchdog.outcome
    power(RE, stand, 100.0, range(1))  # in SAFE, by hand
    wait_until(lambda: watchdog.outcome is not first, 10, "the safe action again")
    assert watchdog.machine.state is StandState.SAFE
    assert watchdog.outcome is not None and watchdog.outcome.hv_safe is not None
    wait_until(lambda: not watchdog.hv_up, 10, "HV down again")
    steps = [r.getMessage() for r in caplog.records if r.getMessage().startswith("safe action")]
    assert steps.count("safe action: HV set to 0 V on every channel of hv") == 2


def test_hv_that_stays_up_after_the_safe_action_is_an_error(
    RE: RunEngine, guarded: Guarded
) -> None:
    stand, watchdog = guarded()
    to_run(RE, watchdog)
    power(RE, stand, 5.0, range(1))
    wait_until(lambda: watchdog.hv_up, 10, "HV up in the watchdog's readings")
    assert stand.simulators is not None
    stand.simulators["hv"].set_faults("local")  # LOCAL control: every set refused
    watchdog.client.estop(True, "panel")
    watchdog.poke()
    wait_until(lambda: watchdog.machine.state is StandState.ERROR, 20, "ERROR")
    last = watchdog.machine.history[-1]
    assert (last.old, last.who) == (StandState.SAFE, "watchdog")
    wait_until(lambda: watchdog.outcome is not None, 10, "the safe action's outcome")
    assert watchdog.outcome is not None and len(watchdog.outcome.problems) > 1
    assert last.why == "HV could not be brought below 2 V: " + "; ".join(watchdog.outcome.problems)
    stand.simulators["hv"].set_faults("none")


def test_a_process_that_stood_still_is_not_tripped_by_the_time_it_stood(
    RE: RunEngine, guarded: Guarded
) -> None:
    """The IOC's process stands still for 3 s (a suspended VM, a host swapping): its clock
    counts at most one step of that (4 poll periods, at least 1 s). A client that beat until
    then and beats again after is not taken for a client gone quiet (heartbeat timeout 2 s),
    nor links that answer right after for links lost (2.5 s): the stand stays in RUN. (The
    links' 5 s reply timeouts outlast the stall: a read that timed out in it would take its
    retries after it, which a link timeout must allow for, as the default one does.)"""
    links = {name: {"timeout": 5.0} for name in ("hv", "chiller", "coldbox", "smu", "lv1", "lv2")}
    _, watchdog = guarded(poll_period=0.2, heartbeat_timeout=2.0, link_timeout=2.5, links=links)
    to_run(RE, watchdog)

    def beats(count: int) -> None:
        for _ in range(count):
            RE.loop.call_soon_threadsafe(watchdog.client.heartbeat)
            time.sleep(0.2)
            assert watchdog.machine.state is StandState.RUN, watchdog.machine.reason

    beats(5)
    checks = watchdog.checks
    RE.loop.call_soon_threadsafe(time.sleep, 3.0)  # the loop stands still, beats stop
    time.sleep(3.2)
    beats(10)
    assert watchdog.checks > checks + 5  # the checks went on after the stall


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


def test_ready_is_refused_while_a_reading_awaits_its_confirmation(
    RE: RunEngine, guarded: Guarded
) -> None:
    """The coldbox answers once with its lid open and its dry air lost, then no more: both
    findings await the one more reading that would confirm them (no trip on one reading), and
    READY is refused, naming both, until they are confirmed or cleared."""
    stand, watchdog = guarded(
        poll_period=0.5, link_timeout=60.0, links={"coldbox": {"timeout": 0.2, "attempts": 1}}
    )
    assert stand.simulators is not None
    box = stand.simulators["coldbox"]
    run(RE, lambda: stand.instruments["coldbox"].client.set_valve(True))  # type: ignore[attr-defined]
    box.set_faults("hang_after=1")  # one more reading, then silence
    box.instrument.open_lid()  # type: ignore[attr-defined]
    box.instrument.set_flow_failure(True)  # type: ignore[attr-defined]
    wait_until(lambda: len(watchdog.pending) == 2, 10, "two findings awaiting confirmation")
    try:
        with pytest.raises(StateError) as refused:
            run(RE, lambda: watchdog.request("READY", WHO, "prepare"))
    finally:
        box.reset()
    reasons = "; ".join(f.reason for f in watchdog.pending)
    assert str(refused.value) == f"READY refused: a reading awaits confirmation: {reasons}"
    assert "lid" in reasons and "dry-air flow lost" in reasons, reasons
    assert watchdog.machine.state is StandState.INIT


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


def test_a_safe_action_with_a_failed_step_says_which_in_the_log(
    RE: RunEngine, guarded: Guarded, caplog: pytest.LogCaptureFixture
) -> None:
    """HV down but the chiller and the second LV supply not answering: SAFE (not ERROR: HV is
    known), and the problems are logged as one error naming the steps that failed."""
    caplog.set_level(logging.ERROR, "teststand.safety.watchdog")
    stand, watchdog = guarded()
    assert stand.simulators is not None
    for name in ("chiller", "lv2"):
        stand.simulators[name].set_faults("hang")
    try:
        watchdog.client.estop(True, "panel")
        watchdog.poke()
        wait_until(lambda: watchdog.outcome is not None, 30, "the safe action done")
        assert watchdog.outcome is not None and watchdog.outcome.hv_safe is not None
        problems = sorted(watchdog.outcome.problems)
        assert len(problems) == 2 and problems[0] == (
            "chiller: safe state failed: TimeoutError: no answer in time"
        ), problems
        assert problems[1].startswith("lv2: output off failed: TransportTimeout: "), problems
        assert [r.getMessage() for r in caplog.records if r.name.endswith("watchdog")] == [
            "safe action finished with problems: " + "; ".join(watchdog.outcome.problems)
        ]
    finally:
        for name in ("chiller", "lv2"):
            stand.simulators[name].reset()
        watchdog.client.estop(False, "panel")


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
