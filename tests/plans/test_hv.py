"""hv_ramp and hv_off on the simulated stand."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from bluesky import RunEngine
from bluesky.utils import RunEngineInterrupted
from helpers import run

from teststand.plans import HVSafetyError, PlanArgumentError, hv_off, hv_ramp
from teststand.plans.common import await_all, bring_to_zero, call, check_bias
from teststand.safety.runengine import StandSafeError, fail_plan
from teststand.stand import TestStand

#: The supply's transport gives up on a reply in 0.6 s (two 0.2 s tries), not 8 s.
SILENT_HV_QUICKLY = {"hv": {"timeout": 0.2, "attempts": 2}}


def channels(stand: TestStand) -> list[dict[str, Any]]:
    assert stand.simulators is not None
    found: list[dict[str, Any]] = stand.simulators["hv"].instrument.snapshot()["channels"]  # type: ignore[attr-defined]
    return found


@contextlib.contextmanager
def acting_when(condition: Callable[[], bool], action: Callable[[], object]) -> Iterator[None]:
    """While the block runs, a thread waits (up to 20 s) until `condition()`, then runs
    `action()` (what another program or the supply itself does meanwhile)."""

    def watch() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not condition():
            time.sleep(0.002)
        action()

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        yield
    finally:
        watcher.join()


def test_ramp_leaves_hv_up_and_off_brings_it_down(RE: RunEngine, stand: TestStand) -> None:
    starts: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    RE.subscribe(lambda name, doc: starts.append(doc) if name == "start" else None)
    RE.subscribe(lambda name, doc: events.append(doc["data"]) if name == "event" else None)
    RE(hv_ramp(stand, [1, 2], 80, rate=20))
    # the reading after the ramp is at the target: the plan waited for both slots' moves
    assert [round(events[-1][key]) for key in ("slot1", "slot2")] == [80, 80], events[-1]
    up = channels(stand)
    assert [round(abs(up[i]["vmon"])) for i in (0, 1)] == [80, 80]
    assert up[0]["on"] and not up[2]["on"]
    RE(hv_off(stand, "1-2"))
    down = channels(stand)
    assert all(abs(ch["vmon"]) < 2 and not ch["on"] for ch in down)
    assert [(doc["test"], doc["module_ids"][:1]) for doc in starts] == [
        ("hv_ramp", ["20UPGM22110001"]),
        ("hv_off", ["20UPGM22110001"]),
    ]
    assert starts[0]["rate"] == 20 and starts[0]["target"] == 80


def test_ramp_aborted_on_the_way_goes_back_to_zero(
    RE: RunEngine, make_stand: Callable[..., TestStand]
) -> None:
    # at 20x the 40..100 V window lasts 1.5 s of wall time: a loaded machine still sees it
    stand = make_stand(speed=20)
    seen: list[float] = []

    def pause() -> None:
        seen.append(abs(channels(stand)[2]["vmon"]))
        RE.request_pause()

    with (
        acting_when(lambda: abs(channels(stand)[2]["vmon"]) >= 40, pause),
        pytest.raises(RunEngineInterrupted),
    ):
        RE(hv_ramp(stand, [3], 100, rate=2))  # 50 s simulated, 2.5 s at 20x
    assert 40 <= seen[0] < 100
    RE.abort()
    assert abs(channels(stand)[2]["vmon"]) < 2


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"slots": [4], "target": 150}, "above its 120 V limit"),
        ({"slots": [1], "target": 50, "rate": 0}, "ramp rate"),
        ({"slots": [1], "target": 50, "rate": 500}, "ramp rate"),
        ({"slots": [0], "target": 50}, "unknown slot"),
    ],
)
def test_bad_arguments_refused_before_hardware(
    RE: RunEngine, stand: TestStand, arguments: dict[str, Any], message: str
) -> None:
    assert stand.simulators is not None
    before = stand.simulators["hv"].server.commands
    with pytest.raises(PlanArgumentError, match=message):
        RE(hv_ramp(stand, **arguments))
    assert stand.simulators["hv"].server.commands == before


def test_channel_stuck_above_2_volts_raises_naming_it(RE: RunEngine, stand: TestStand) -> None:
    RE(hv_ramp(stand, [1, 2], 60, rate=50))
    channel = stand.slots[2].hv_channel
    run(RE, lambda: channel.rate_down.set(500))  # the wait for 0 V follows the channel's rate
    assert stand.simulators is not None
    sim = stand.simulators["hv"].instrument
    sim.stick(1)  # type: ignore[attr-defined]  # slot 2's output stage fails at 60 V
    started = time.monotonic()
    with pytest.raises(HVSafetyError, match=rf"{channel.name}: still at 6\d(\.\d+)? V") as info:
        RE(hv_off(stand, [1, 2]))
    assert stand.slots[1].hv_channel.name not in str(info.value)
    assert time.monotonic() - started < 60
    assert abs(channels(stand)[0]["vmon"]) < 2
    sim.stick(1, False)  # type: ignore[attr-defined]
    RE(hv_off(stand, [2]))
    assert abs(channels(stand)[1]["vmon"]) < 2


def test_zero_cancels_the_ramp_in_progress(RE: RunEngine, stand: TestStand) -> None:
    channel = stand.slots[3].hv_channel

    async def ramp_then_zero() -> asyncio.Task[None]:
        await channel.rate_up.set(1)  # 100 s simulated to 100 V, 0.5 s at 200x
        await channel.on()
        ramp = asyncio.ensure_future(channel.ramp_to(100, None))
        while await channel.voltage.get_value() < 10:  # noqa: ASYNC110 (polls the simulator)
            await asyncio.sleep(0.005)
        await bring_to_zero([channel])
        return ramp

    ramp = run(RE, ramp_then_zero)
    assert ramp.cancelled()  # it would write its 100 V again (a suspended plan's step)
    assert abs(channels(stand)[2]["vmon"]) < 2


async def at_60_v_coming_down_slowly(channel: Any) -> None:
    """Switch the channel on at 60 V, wait until it is there, and set a slow ramp down (60 s
    simulated from 60 V, 0.3 s at 200x)."""
    await channel.on()
    await channel.setpoint.set(60.0)
    while await channel.voltage.get_value() < 58:  # noqa: ASYNC110 (polls the simulator)
        await asyncio.sleep(0.005)
    await channel.rate_down.set(1.0)


def test_a_set_point_written_after_the_zero_is_zeroed_again(
    RE: RunEngine, stand: TestStand
) -> None:
    """A step's move still being checked as the zero ran writes its voltage after it: the wait
    for 0 V sees the set point and writes 0 V again (it waited at 60 V and failed)."""
    channel = stand.slots[4].hv_channel

    async def zero_then_late_step() -> None:
        await at_60_v_coming_down_slowly(channel)

        async def late_step() -> None:
            await asyncio.sleep(0.05)
            await channel.setpoint.set(30.0)

        late = asyncio.ensure_future(late_step())
        await bring_to_zero([channel])
        await late

    run(RE, zero_then_late_step)
    assert channels(stand)[3]["vset"] == 0
    assert abs(channels(stand)[3]["vmon"]) < 2


def test_a_slow_ramp_down_is_waited_for_without_writing_0_v_again(
    RE: RunEngine, stand: TestStand, caplog: pytest.LogCaptureFixture
) -> None:
    """A channel coming down at its own slow rate keeps its set point at 0 V: the wait reads it
    until it is below 2 V and neither writes 0 V again nor warns of a late set point."""
    channel = stand.slots[4].hv_channel

    async def slow_zero() -> None:
        await at_60_v_coming_down_slowly(channel)
        await bring_to_zero([channel])

    run(RE, slow_zero)
    assert abs(channels(stand)[3]["vmon"]) < 2
    assert not [m for m in caplog.messages if "written after its 0 V" in m], caplog.messages


def test_a_supply_silent_from_the_start_raises_naming_the_channel(
    RE: RunEngine, make_stand: Callable[..., TestStand]
) -> None:
    """The supply answers nothing at all: neither the zero, nor the ramp-down time the wait is
    sized by, nor the voltage can be had. The zero still ends in HVSafetyError naming the
    channel and the missing replies (not in the first raw read error)."""
    stand = make_stand(links=SILENT_HV_QUICKLY)
    channel = stand.slots[2].hv_channel
    assert stand.simulators is not None
    supply = stand.simulators["hv"]
    supply.set_faults("hang")
    try:
        with pytest.raises(HVSafetyError) as info:
            run(RE, lambda: bring_to_zero([channel]))
    finally:
        supply.reset()
    message = str(info.value)
    assert message.startswith(f"HV not confirmed at 0 V ({channel.name}: "), message
    assert message.count("no reply") == 2, message  # the zero's and the voltage's


def test_a_bias_is_a_magnitude_up_to_and_including_the_slots_limit(stand: TestStand) -> None:
    """`check_bias`, before any hardware: 0 V and a fraction of a volt are biases, the slot's
    limit itself is allowed, a volt above it and a negative value are refused, saying why."""
    planar, three_d = stand.slots[1], stand.slots[4]  # limits 250 V and 120 V
    for voltage in (0.0, 0.5, 250.0):
        check_bias(stand, [planar], voltage)
    check_bias(stand, [planar, three_d], 120.0)
    with pytest.raises(PlanArgumentError) as above:
        check_bias(stand, [planar, three_d], 121.0)
    assert str(above.value) == (
        "slot 4: 121.0 V is above its 120 V limit for 3d sensors (limits.max_bias in the stand "
        "file)"
    )
    with pytest.raises(PlanArgumentError) as negative:
        check_bias(stand, [planar], -0.5)
    assert str(negative.value) == (
        "-0.5 V: give bias voltages as magnitudes (the supply's polarity applies the sign)"
    )


def test_a_supply_refusing_the_zero_raises_naming_each_channel(
    RE: RunEngine, stand: TestStand
) -> None:
    """Each channel's zero is tried even when another's fails, written again while the channel
    stays up, and the failures are said as HV not confirmed at 0 V, channel by channel, with the
    refusal and where the channel stayed (not as the first raw error)."""
    for slot in (1, 2):
        stand.slots[slot].hv_channel.movable_logic.margin = 1.0  # the wait for 0 V: 1.6 s
    RE(hv_ramp(stand, [1, 2], 30, rate=50))
    assert stand.simulators is not None
    supply = stand.simulators["hv"]
    supply.set_faults("local")  # LOCAL control: every set refused, VSET 0 too
    try:
        with pytest.raises(HVSafetyError) as info:
            run(RE, lambda: bring_to_zero([s.hv_channel for s in (stand.slots[1], stand.slots[2])]))
    finally:
        supply.set_faults("local=0")
    message = str(info.value)
    assert message.startswith("HV not confirmed at 0 V (") and message.endswith(
        "); check the supply now"
    ), message
    for slot, number in ((1, 0), (2, 1)):
        refused = "SET refused: the module is in LOCAL control; switch it to REMOTE while sending"
        assert f"{stand.slots[slot].hv_channel.name}: " in message
        assert f"{refused} '$CMD:SET,CH:{number},PAR:VSET,VAL:0.0', still at 30 V" in message
    RE(hv_off(stand, [1, 2]))
    assert all(abs(ch["vmon"]) < 2 for ch in channels(stand)[:2])


def test_a_link_lost_while_waiting_for_0_v_raises_naming_the_channel(
    RE: RunEngine, make_stand: Callable[..., TestStand]
) -> None:
    """The zero is written, then the supply stops answering while the channel (stuck at 30 V)
    is awaited at 0 V: HVSafetyError names the channel and the lost reply. The wait outlasts
    several failed reads, so the set point's check between them fails too, and does not end
    the wait either."""
    stand = make_stand(links=SILENT_HV_QUICKLY)
    channel = stand.slots[2].hv_channel
    channel.movable_logic.margin = 3.0  # the ramp timeout's fixed margin: 3 s, not 10 s
    RE(hv_ramp(stand, [2], 30, rate=50))
    assert stand.simulators is not None
    supply = stand.simulators["hv"]
    instrument: Any = supply.instrument
    instrument.stick(1)  # slot 2's output stage holds 30 V: the wait goes on reading it

    try:
        with (
            acting_when(lambda: channels(stand)[1]["vset"] == 0, lambda: supply.set_faults("hang")),
            pytest.raises(HVSafetyError) as info,
        ):
            run(RE, lambda: bring_to_zero([channel]))
    finally:
        supply.reset()
        instrument.stick(1, False)
    message = str(info.value)
    assert message.startswith(f"HV not confirmed at 0 V ({channel.name}: "), message
    assert "no reply" in message and "still at" not in message, message
    RE(hv_off(stand, [2]))
    assert abs(channels(stand)[1]["vmon"]) < 2


def test_a_zero_refused_once_is_written_again_and_hv_coming_down_is_no_failure(
    RE: RunEngine, stand: TestStand, caplog: pytest.LogCaptureFixture
) -> None:
    """The zero's first write is refused (LOCAL, released just after): the wait for 0 V writes
    0 V again, the channel comes down, and the failed zero is only logged (over CA the zero's
    answer can be lost while the IOC did zero the channel)."""
    channel = stand.slots[1].hv_channel
    channel.movable_logic.margin = 1.0
    RE(hv_ramp(stand, [1], 30, rate=50))
    assert stand.simulators is not None
    supply = stand.simulators["hv"]
    before = supply.server.commands
    supply.set_faults("local")

    # set_faults runs on the simulator's loop, after that first write was refused
    with acting_when(lambda: supply.server.commands > before, lambda: supply.set_faults("local=0")):
        run(RE, lambda: bring_to_zero([channel]))
    assert abs(channels(stand)[0]["vmon"]) < 2 and channels(stand)[0]["vset"] == 0
    failed = [m for m in caplog.messages if m.startswith(f"{channel.name}: its zero failed (")]
    assert len(failed) == 1, caplog.messages
    assert failed[0].endswith(") but it came down to 0 V") and "LOCAL control" in failed[0]


@pytest.mark.parametrize("waiting", [await_all, call])
def test_a_zero_that_fails_after_its_plan_was_interrupted_is_logged_by_name(
    RE: RunEngine, caplog: pytest.LogCaptureFixture, waiting: Callable[..., Any]
) -> None:
    """The stand going SAFE throws its error into a plan waiting in its cleanup: the zero goes on
    without it, and its failure is an error in the log naming it, not asyncio's "Task exception
    was never retrieved" at some later garbage collection (the soak's lost HV link)."""
    interrupted = threading.Event()

    async def bring_to_zero() -> None:
        await asyncio.sleep(0.05)
        interrupted.wait(5)
        raise HVSafetyError("HV not confirmed at 0 V (hv-channels-0: no answer)")

    def plan() -> Any:
        yield from waiting(bring_to_zero)

    def went_safe() -> None:
        fail_plan(RE, StandSafeError("the stand went ERROR: lost link to hv"))
        interrupted.set()

    threading.Timer(0.02, RE.loop.call_soon_threadsafe, (went_safe,)).start()
    with pytest.raises(StandSafeError):
        RE(plan())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and "stopped waiting" not in caplog.text:
        time.sleep(0.01)
    failed = [r for r in caplog.records if "stopped waiting" in r.getMessage()]
    assert [(r.levelname, r.getMessage()) for r in failed] == [
        (
            "ERROR",
            "bring_to_zero failed after its plan stopped waiting for it: "
            "HV not confirmed at 0 V (hv-channels-0: no answer)",
        )
    ]
