"""The RunEngine side in one process: plans move the stand through READY and RUN, their own
0 V exits still work, a plan sees SAFE and stops with the watchdog's reason, `RE.halt()` is
caught, and a humid box or an opened lid during a cold IV scan is safe before condensation."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
from bluesky import RunEngine
from helpers import run
from safety_helpers import COLD, History, Sample, wait_until

from teststand.plans import hv_ramp, iv_scan
from teststand.safety import StandState, Watchdog
from teststand.safety.runengine import Attachment, DirectControl, StandSafeError, attach
from teststand.stand import TestStand

Guarded = Callable[..., tuple[TestStand, Watchdog]]
WHO = "alice@localhost:7"


@pytest.fixture
def attached(RE: RunEngine) -> Iterator[Callable[[Watchdog], Attachment]]:
    made: list[Attachment] = []

    def make(watchdog: Watchdog) -> Attachment:
        attachment = attach(RE, DirectControl(watchdog, WHO, RE.loop), heartbeat_period=0.2)
        made.append(attachment)
        return attachment

    yield make
    for attachment in made:
        attachment.detach()


def transitions(watchdog: Watchdog) -> list[tuple[str, str]]:
    return [(t.new.value, t.who) for t in watchdog.machine.history]


def test_a_plan_runs_in_run_and_its_own_zero_volt_exit_works(
    RE: RunEngine, guarded: Guarded, attached: Callable[[Watchdog], Attachment]
) -> None:
    stand, watchdog = guarded()
    attached(watchdog)
    RE(iv_scan(stand, slots=[1, 2], stop=200, step=100, settle=0.0))
    assert transitions(watchdog) == [
        ("INIT", "watchdog"),
        ("READY", WHO),
        ("RUN", WHO),
        ("READY", WHO),
    ]
    assert watchdog.machine.reason == "the plan ended"
    assert stand.simulators is not None
    channels = stand.simulators["hv"].instrument.snapshot()["channels"]  # type: ignore[attr-defined]
    assert max(abs(c["vmon"]) for c in channels) < 2.0


def test_hv_left_up_on_purpose_keeps_the_stand_in_run(
    RE: RunEngine, guarded: Guarded, attached: Callable[[Watchdog], Attachment]
) -> None:
    stand, watchdog = guarded()
    attached(watchdog)
    RE(hv_ramp(stand, slots=[1], target=100, rate=50))
    assert watchdog.machine.state is StandState.RUN
    RE(iv_scan(stand, slots=[1], stop=100, step=100, settle=0.0))  # ends at 0 V: back to READY
    assert watchdog.machine.state is StandState.READY


def test_a_latched_stand_refuses_the_next_plan(
    RE: RunEngine, guarded: Guarded, attached: Callable[[Watchdog], Attachment]
) -> None:
    stand, watchdog = guarded()
    attached(watchdog)
    watchdog.client.estop(True, "panel")
    wait_until(lambda: watchdog.machine.state is StandState.SAFE, 2, "SAFE")
    with pytest.raises(StandSafeError, match="the stand is SAFE: E-stop pressed by panel"):
        RE(iv_scan(stand, slots=[1], stop=100, step=100, settle=0.0))


def bias_reached(history: History, volts: float) -> Callable[[], bool]:
    return lambda: history.sample().hv_max >= volts


def start_when(condition: Callable[[], bool], action: Callable[[], None]) -> threading.Thread:
    def wait_then_act() -> None:
        wait_until(condition, 30, "the fault's moment")
        action()

    thread = threading.Thread(target=wait_then_act, daemon=True)
    thread.start()
    return thread


def safe_before_condensation(samples: list[Sample], safe_setpoint: float) -> None:
    """The simulators' history: HV below 2 V and cooling set safe before any plate went below
    the dew point, and never HV on a plate below the dew point."""
    condensing = [s for s in samples if s.margin <= 0]
    assert all(s.hv_max < 2.0 for s in condensing)
    safe = [s for s in samples if s.hv_max < 2.0 and s.chiller_setpoint == safe_setpoint]
    assert safe, "never safe"
    if condensing:
        assert safe[0].time < condensing[0].time


def cold_run(RE: RunEngine, stand: TestStand) -> None:
    """The chiller running at -10 °C, supplies ramping down at 50 V/s."""
    chiller = stand.instruments["chiller"].client  # type: ignore[attr-defined]
    caen = stand.instruments["hv"].client  # type: ignore[attr-defined]

    async def prepare() -> None:
        await chiller.set_setpoint(-10.0)
        await chiller.start()
        for ch in range(8):
            await caen.set(caen.ramp_down_name, ch, 50)

    run(RE, prepare)


@pytest.mark.parametrize(
    ("fault", "speed", "reason"),
    [("humidity", 50.0, "dew point margin"), ("lid", 20.0, "the coldbox lid is open")],
)
def test_a_fault_during_a_cold_iv_scan(
    RE: RunEngine,
    guarded: Guarded,
    attached: Callable[[Watchdog], Attachment],
    fault: str,
    speed: float,
    reason: str,
) -> None:
    stand, watchdog = guarded(speed=speed, sim=COLD, cold_below=-20)
    cold_run(RE, stand)
    attached(watchdog)
    sims = stand.simulators
    assert sims is not None
    box = sims["coldbox"].instrument
    history = History(sims)
    act = (
        (lambda: box.set_ambient_dew_point(15.0))  # type: ignore[attr-defined]
        if fault == "humidity"
        else box.open_lid  # type: ignore[attr-defined]
    )
    start_when(bias_reached(history, 290.0), act)
    with pytest.raises(StandSafeError, match=reason):
        RE(iv_scan(stand, slots="1-8", stop=500, step=50, settle=0.5))
    wait_until(lambda: watchdog.outcome is not None, 20, "the safe action done")
    wait_until(lambda: not history.sample().lv_on, 2, "LV off")
    samples = history.stop()
    assert watchdog.machine.state is StandState.SAFE
    assert reason in watchdog.machine.reason
    safe_before_condensation(samples, 20.0)


def test_halt_during_a_ramp(
    RE: RunEngine, guarded: Guarded, attached: Callable[[Watchdog], Attachment]
) -> None:
    stand, watchdog = guarded(speed=2.0)
    attached(watchdog)
    sims = stand.simulators
    assert sims is not None
    history = History(sims)
    start_when(bias_reached(history, 100.0), RE.halt)
    with pytest.raises(Exception, match=r"[Hh]alt"):
        RE(hv_ramp(stand, slots="1-4", target=500, rate=50))
    wait_until(lambda: watchdog.machine.state is StandState.SAFE, 2, "SAFE after RE.halt()")
    assert "went halting with the stand in RUN" in watchdog.machine.reason
    peak = max(s.hv_max for s in history.samples)
    floor = peak / 50.0 / 2.0  # hv_ramp's RDW 50 V/s of simulated time, at speed 2
    wait_until(lambda: history.sample().hv_max < 2.0, floor + 5.0, "every channel at 0 V")
    wait_until(lambda: not history.sample().lv_on, 5, "LV off")
    history.stop()
