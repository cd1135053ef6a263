"""What every plan of the stand shares: argument checks, run metadata, and HV safety.

Arguments are checked before the first message is yielded, so a bad call fails before any
hardware moves. Every plan that raises HV wraps itself in `hv_safe`, which brings the slots it
touched back to 0 V on every exit path the RunEngine runs cleanup for (normal end, exception,
abort, pause-then-abort, Ctrl-C, a suspender's `stop`).
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import os
import platform
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from functools import partial
from typing import Any, TypeVar

import bluesky
import ophyd_async
from bluesky import Msg
from bluesky import preprocessors as bpp
from bluesky.protocols import Reading
from bluesky.utils import MsgGenerator

import teststand
from teststand.callbacks.schema import IVState, SlotInfo, TestName, validate_metadata
from teststand.errors import TeststandError
from teststand.roles import SMU, HVChannel, HVStatus
from teststand.stand import ModuleSlot, TestStand

log = logging.getLogger(__name__)
T = TypeVar("T")

#: |VMON| below this counts as "at 0 V".
ZERO_TOLERANCE = 2.0


class PlanArgumentError(TeststandError, ValueError):
    """A plan argument refused before the plan touched any hardware."""


class HVSafetyError(TeststandError):
    """HV could not be brought back to 0 V on every channel; check the supply at once."""


SlotSelection = int | str | Sequence[int] | None
Readings = dict[str, Reading[Any]]


def parse_slot_numbers(selection: SlotSelection, available: Iterable[int]) -> list[int]:
    """Slot numbers from `3`, `[1, 2]`, `"1-4,7"` or None (every slot holding a module)."""
    available = sorted(available)
    if selection is None:
        return available
    numbers: list[int] = []
    if isinstance(selection, int):
        numbers = [selection]
    elif isinstance(selection, str):
        for part in filter(None, (p.strip() for p in selection.split(","))):
            first, dash, last = part.partition("-")
            try:
                low, high = int(first), int(last) if dash else int(first)
            except ValueError:
                raise PlanArgumentError(
                    f"slots {selection!r}: expected numbers and ranges like '1-4,7'"
                ) from None
            numbers.extend(range(low, high + 1))
    else:
        numbers = [int(n) for n in selection]
    unknown = sorted(set(numbers) - set(available))
    if unknown or not numbers:
        raise PlanArgumentError(
            f"unknown slot(s) {unknown or selection!r}; this stand has slots "
            f"{', '.join(map(str, available))}"
        )
    return sorted(set(numbers))


def module_slots(stand: TestStand, selection: SlotSelection) -> list[ModuleSlot]:
    """The chosen slots, each of which must hold a module (with its id) in the stand file."""
    occupied = [n for n, slot in stand.config.slots.items() if slot.module is not None]
    numbers = parse_slot_numbers(selection, stand.config.slots if selection else occupied)
    empty = [n for n in numbers if stand.config.slots[n].module is None]
    if empty:
        raise PlanArgumentError(
            f"slot(s) {', '.join(map(str, empty))} hold no module: give the module id under "
            "slots.N.module.id in the stand file, or leave the slot out"
        )
    if not numbers:
        raise PlanArgumentError("no slot of this stand holds a module; nothing to test")
    return [stand.slots[n] for n in numbers]


def slot_info(stand: TestStand, slot: ModuleSlot) -> SlotInfo:
    config = stand.config.slots[slot.number]
    module = config.module
    if module is None:
        raise PlanArgumentError(f"slot {slot.number} holds no module")
    return SlotInfo(
        module_id=module.id,
        sensor=module.sensor,
        area_cm2=module.area,
        max_bias=stand.config.limits.max_bias.for_sensor(module.sensor),
        hv_channel=str(config.hv),
        layer=module.qc_layer,
    )


def max_bias(stand: TestStand, slot: ModuleSlot) -> float:
    return slot_info(stand, slot).max_bias


def check_bias(stand: TestStand, slots: Sequence[ModuleSlot], voltage: float) -> None:
    """Refuse a bias (a magnitude, V) above any chosen slot's limit."""
    if voltage < 0:
        raise PlanArgumentError(
            f"{voltage} V: give bias voltages as magnitudes (the supply's polarity applies the "
            "sign)"
        )
    for slot in slots:
        limit = max_bias(stand, slot)
        if voltage > limit:
            raise PlanArgumentError(
                f"slot {slot.number}: {voltage} V is above its {limit:g} V limit for "
                f"{slot_info(stand, slot).sensor.value} sensors (limits.max_bias in the stand "
                "file)"
            )


def check_compliance(stand: TestStand, compliance: float | None) -> float:
    """The current compliance of a plan (A): the stand's limit by default, never above it."""
    limit = stand.config.limits.compliance
    chosen = limit if compliance is None else compliance
    if not 0 < chosen <= limit:
        raise PlanArgumentError(
            f"compliance {chosen} A: give a current in (0, {limit}] A, the stand's limit"
        )
    return chosen


def stop_state(status: HVStatus) -> IVState:
    """Why a channel that failed to hold its bias stopped: a current trip counts as compliance."""
    return "compliance" if status.in_compliance else "error"


def versions() -> dict[str, str]:
    return {
        "teststand": teststand.__version__,
        "bluesky": bluesky.__version__,
        "ophyd_async": ophyd_async.__version__,
        "python": platform.python_version(),
    }


def default_operator() -> str:
    return os.environ.get("TESTSTAND_OPERATOR") or getpass.getuser()


def run_metadata(
    stand: TestStand,
    slots: Sequence[ModuleSlot],
    test: TestName,
    stage: str,
    operator: str | None,
    md: dict[str, Any] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """The validated start-document metadata of a run on these slots (raises MetadataError)."""
    extra = dict(md or {})
    model = validate_metadata(
        stand=stand.config.name,
        operator=operator or default_operator(),
        test=test,
        stage=stage,
        slots={str(slot.number): slot_info(stand, slot) for slot in slots},
        versions=versions(),
        **fields,
        **extra,
    )
    return model.start_metadata()


def read_now(device: Any) -> MsgGenerator[Readings]:
    """A reading of `device` outside any event. After a rewind (pause, suspension) bluesky hands
    the plan None for the message it interrupted, so read again until there is a reading."""
    reading: Readings | None = None
    while reading is None:
        reading = yield Msg("read", device)
    return reading


def instruments(stand: TestStand) -> list[Any]:
    """The instruments of the baseline stream, which records their configuration too. A source-
    measure unit is left out: reading it means measuring, which fails with its output off; the
    runs that use it read it (and so record its configuration) in their primary stream."""
    smus = stand.role(SMU)
    return [d for name, d in stand.instruments.items() if name not in smus]


def call(factory: Callable[[], Awaitable[T]]) -> MsgGenerator[T]:
    """Await one coroutine on the RunEngine's loop and return its result (awaited again when a
    rewind interrupted it)."""
    while True:
        tasks = yield from _wait_for([factory])
        if tasks:
            result: T = tasks[0].result()
            return result


def await_all(*factories: Callable[[], Awaitable[Any]]) -> MsgGenerator[None]:
    """Await the coroutines together on the RunEngine's loop and raise the first failure here
    (a bare `wait_for` message returns its tasks and drops their exceptions)."""
    tasks = yield from _wait_for(factories)
    for task in tasks or ():
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()


def _wait_for(factories: Iterable[Callable[[], Awaitable[Any]]]) -> MsgGenerator[Any]:
    """A `wait_for` message: its tasks, or None after a rewind. A plan interrupted while it waits
    (an abort, the stand going SAFE) leaves them running: a failure of one after that is logged
    as an error naming it (asyncio would only say, at its garbage collection, that a task's
    exception was never retrieved)."""
    abandoned = False

    async def watched(factory: Callable[[], Awaitable[Any]]) -> Any:
        try:
            return await factory()
        except Exception as exc:
            if not abandoned:
                raise
            log.error("%s failed after its plan stopped waiting for it: %s", _named(factory), exc)

    try:
        return (yield Msg("wait_for", None, [partial(watched, f) for f in factories]))
    except BaseException:
        abandoned = True
        raise


def _named(factory: Callable[..., Any]) -> str:
    """`bring_to_zero` for `partial(bring_to_zero, channels)`, a bound method's owner and name."""
    function = getattr(factory, "func", factory)
    owner = getattr(getattr(function, "__self__", None), "name", None)
    name = getattr(function, "__name__", repr(function))
    return f"{owner}.{name}" if owner else name


# ---- HV safety ----


async def zero_setpoint(channel: HVChannel) -> None:
    """The channel's safe-state action (`zero()`): its ramp cancelled, VSET 0 written."""
    await channel.zero()


async def bring_to_zero(channels: Sequence[HVChannel], timeout: float | None = None) -> None:
    """Bring every channel to 0 V (`zero()`: ramps in progress cancelled, so that a suspended
    plan's step does not write its voltage again; all channels, even when some fail), then wait
    until each reads below `ZERO_TOLERANCE`, for as long as the slowest ramp down from where the
    channels are may take (their `ramp_timeout`) or `timeout` s, writing 0 V again to any whose
    set point is not 0; raise `HVSafetyError` naming those that did not come down. A failed zero
    alone is no failure: its put's answer may have been lost while the zero was done (an IOC
    slower than the put's timeout); it is named with the channel if that stays up."""
    results = await asyncio.gather(*(c.zero() for c in channels), return_exceptions=True)
    failed = {c.name: f"{r}" for c, r in zip(channels, results, strict=True) if r is not None}
    waiting = list(channels)
    if timeout is None:
        durations = await asyncio.gather(*map(_ramp_down_time, waiting), return_exceptions=True)
        timeout = max((d for d in durations if isinstance(d, float)), default=0.0)
    deadline = time.monotonic() + timeout
    problems: dict[str, str] = {}
    while waiting:
        readings = await asyncio.gather(
            *(c.voltage.get_value() for c in waiting), return_exceptions=True
        )
        late = {
            c.name: f"{v}" if isinstance(v, BaseException) else f"still at {v:g} V"
            for c, v in zip(waiting, readings, strict=True)
            if isinstance(v, BaseException) or abs(v) >= ZERO_TOLERANCE
        }
        waiting = [c for c in waiting if c.name in late]
        if waiting and time.monotonic() > deadline:
            problems = {
                name: f"{failed[name]}, {why}" if name in failed else why
                for name, why in late.items()
            }
            break
        if waiting:
            await _zero_again(waiting)
            await asyncio.sleep(0.2)
    for name in failed.keys() - problems.keys():
        log.warning("%s: its zero failed (%s) but it came down to 0 V", name, failed[name])
    if problems:
        listed = "; ".join(f"{name}: {why}" for name, why in problems.items())
        raise HVSafetyError(f"HV not confirmed at 0 V ({listed}); check the supply now")


async def _zero_again(channels: Sequence[HVChannel]) -> None:
    """Write 0 V again to the channels whose set point is no longer 0: a move that was being
    checked as `zero()` ran (a suspended plan's step) writes its voltage after it."""
    setpoints = await asyncio.gather(
        *(c.setpoint.get_value(cached=False) for c in channels), return_exceptions=True
    )
    for channel, setpoint in zip(channels, setpoints, strict=True):
        if isinstance(setpoint, float) and setpoint != 0:
            log.warning(
                "%s: set point %g V written after its 0 V: 0 V again", channel.name, setpoint
            )
            with contextlib.suppress(Exception):  # its reading then says whether it came down
                await channel.zero()


async def _ramp_down_time(channel: HVChannel) -> float:
    return await channel.ramp_timeout(abs(await channel.voltage.get_value()), 0.0)


def hv_zero(slots: Sequence[ModuleSlot]) -> MsgGenerator[None]:
    """Bring the slots' HV channels to 0 V and wait for it (raises HVSafetyError)."""
    channels = [slot.hv_channel for slot in slots]
    yield from await_all(partial(bring_to_zero, channels))


def hv_safe(plan: MsgGenerator[Any], slots: Sequence[ModuleSlot]) -> MsgGenerator[Any]:
    """Run `plan`, then bring the slots to 0 V whatever way it ended."""
    return (yield from bpp.finalize_wrapper(plan, hv_zero(slots)))


def switch_on(slots: Sequence[ModuleSlot]) -> MsgGenerator[None]:
    """Switch the slots' HV channels on (at their present set point, normally 0 V)."""
    yield from await_all(*(slot.hv_channel.on for slot in slots))


def ramp(slots: Sequence[ModuleSlot], voltage: float) -> MsgGenerator[None]:
    """Ramp all slots to `voltage` together (each slot checks its own limit) and wait."""
    group = f"ramp-{time.monotonic_ns()}"
    for slot in slots:
        yield Msg("set", slot, voltage, group=group)
    yield Msg("wait", None, group=group)


__all__ = [
    "HVSafetyError",
    "PlanArgumentError",
    "await_all",
    "bring_to_zero",
    "call",
    "check_bias",
    "check_compliance",
    "hv_safe",
    "hv_zero",
    "instruments",
    "module_slots",
    "parse_slot_numbers",
    "ramp",
    "read_now",
    "run_metadata",
    "slot_info",
    "stop_state",
    "switch_on",
    "zero_setpoint",
]
