"""The RunEngine's side of the stand's state machine.

`attach(RE, control)`:
- every plan moves the stand to RUN as it starts (INIT → READY first: the preparation) and back
  to READY at its end, in its cleanup; a plan that leaves HV up on purpose (`hv_ramp`) leaves the
  stand in RUN, under the watchdog's eye on this session;
- the RunEngine's state goes to the watchdog on every change (`RE.state_hook`): `halting`
  (`RE.halt()`, which skips every cleanup) or a pause that holds HV too long makes it act;
- a heartbeat every `heartbeat_period` s, from the RunEngine's event loop (a hung loop stops it);
- when the stand goes SAFE or ERROR, the running plan fails at once with `StandSafeError`
  carrying the watchdog's reason (its own cleanup still runs: lowering HV is always allowed), so
  the queue server stops its queue. A paused plan fails the same way when resumed.

`control` is a `StandControl`: `DirectControl` when the watchdog runs in this process, or the
IOC's PVs over Channel Access.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import logging
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

from bluesky import Msg, RunEngine
from bluesky import preprocessors as bpp
from bluesky.utils import MsgGenerator

from teststand.errors import TeststandError
from teststand.safety.state import LATCHED, StandState, StateError, Transition
from teststand.safety.watchdog import Watchdog

log = logging.getLogger(__name__)

StateCallback = Callable[[StandState, str], None]


class StandSafeError(TeststandError):
    """The stand went SAFE or ERROR while a plan ran (or was latched when it started)."""


class StandControl(Protocol):
    """How a RunEngine session talks to the stand's state machine."""

    who: str

    def state(self) -> tuple[StandState, str]:
        """The last known state and its reason."""
        ...

    async def request(self, state: StandState, why: str) -> None: ...

    def report(self, re_state: str) -> None:
        """The RunEngine's state (called from any thread; must not block)."""
        ...

    def heartbeat(self) -> None: ...

    def subscribe(self, callback: StateCallback) -> None: ...


class DirectControl:
    """The watchdog in this process (a one-process stand): its client is this session."""

    def __init__(self, watchdog: Watchdog, who: str, loop: asyncio.AbstractEventLoop) -> None:
        self.watchdog = watchdog
        self.who = who
        self.loop = loop
        watchdog.client.claim(who)

    def state(self) -> tuple[StandState, str]:
        machine = self.watchdog.machine
        return machine.state, machine.reason

    async def request(self, state: StandState, why: str) -> None:
        await self.watchdog.request(state, self.who, why)

    def report(self, re_state: str) -> None:
        self.loop.call_soon_threadsafe(self._report, re_state)

    def _report(self, re_state: str) -> None:
        self.watchdog.client.report(re_state)
        self.watchdog.poke()

    def heartbeat(self) -> None:
        self.watchdog.client.heartbeat()

    def subscribe(self, callback: StateCallback) -> None:
        def forward(transition: Transition) -> None:
            callback(transition.new, transition.why)

        self.watchdog.machine.subscribe(forward)


def _call(make: Callable[[], Coroutine[Any, Any, None]]) -> MsgGenerator[None]:
    """Await `make()` on the RunEngine's loop; its exception is raised in the plan."""
    tasks = yield Msg("wait_for", None, [lambda: asyncio.ensure_future(make())])
    for task in tasks or ():
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()


def stand_run(control: StandControl, plan: MsgGenerator[Any]) -> MsgGenerator[Any]:
    """`plan` with the stand in RUN while it runs, back to READY at its end."""

    def enter() -> MsgGenerator[None]:
        state, reason = control.state()
        if state in LATCHED:
            raise StandSafeError(f"the stand is {state}: {reason}; reset it once the cause clears")
        if state in (StandState.OFF, StandState.INIT):
            yield from _call(lambda: control.request(StandState.READY, "prepare: a plan starts"))
        if control.state()[0] is not StandState.RUN:
            yield from _call(lambda: control.request(StandState.RUN, "a plan runs"))

    def leave() -> MsgGenerator[None]:
        if control.state()[0] is not StandState.RUN:
            return
        try:
            yield from _call(lambda: control.request(StandState.READY, "the plan ended"))
        except StateError as exc:  # HV left up on purpose (hv_ramp): the stand stays in RUN
            log.info("the stand stays in RUN: %s", exc)

    result = yield from bpp.finalize_wrapper(bpp.pchain(enter(), plan), leave())
    return result


@dataclass
class Attachment:
    """What `attach` installed; `detach()` removes it."""

    RE: RunEngine
    control: StandControl
    heartbeat: Future[None] | None = None
    preprocessor: Callable[[MsgGenerator[Any]], MsgGenerator[Any]] | None = None
    previous_hook: Callable[[str, str], None] | None = None
    active: bool = field(default=True)

    def detach(self) -> None:
        """Remove the hooks and stop the heartbeat (also at the interpreter's exit: a script
        that never detached was aborted by libca, torn down under a heartbeat's put)."""
        atexit.unregister(self.detach)
        self.active = False
        if self.preprocessor in self.RE.preprocessors:
            self.RE.preprocessors.remove(self.preprocessor)
        engine: Any = self.RE  # bluesky annotates state_hook as None
        engine.state_hook = self.previous_hook
        if self.heartbeat is not None:
            self.heartbeat.cancel()
            with contextlib.suppress(Exception):  # its loop may be gone at exit
                concurrent.futures.wait([self.heartbeat], timeout=2.0)


def attach(RE: RunEngine, control: StandControl, heartbeat_period: float = 0.5) -> Attachment:
    """Tie `RE` to the stand's state machine (see the module's docstring)."""
    attachment = Attachment(RE, control, previous_hook=RE.state_hook)

    def hook(new: str, old: str) -> None:
        control.report(new)
        if attachment.previous_hook is not None:
            attachment.previous_hook(new, old)

    def preprocessor(plan: MsgGenerator[Any]) -> MsgGenerator[Any]:
        return stand_run(control, plan)

    def on_state(state: StandState, reason: str) -> None:
        if attachment.active and state in LATCHED:
            error = StandSafeError(f"the stand went {state}: {reason}")
            RE.loop.call_soon_threadsafe(fail_plan, RE, error)

    async def beat() -> None:
        while True:
            control.heartbeat()
            await asyncio.sleep(heartbeat_period)

    engine: Any = RE  # bluesky annotates state_hook as None
    engine.state_hook = hook
    RE.preprocessors.append(preprocessor)
    attachment.preprocessor = preprocessor
    control.subscribe(on_state)
    attachment.heartbeat = asyncio.run_coroutine_threadsafe(beat(), RE.loop)
    control.report(RE.state)
    atexit.register(attachment.detach)
    return attachment


def fail_plan(RE: RunEngine, error: Exception) -> None:
    """Throw `error` into the running plan at its present message, on the RunEngine's loop.

    bluesky has no public call for this; it is what its own suspend and abort requests do: the
    exception is left for the run loop to throw into the plan, and the loop's current await is
    cancelled so that it happens now. A paused plan gets it when resumed.

    A plan being suspended as the stand trips (its suspender saw the same lid) can lose it in
    the suspension's machinery and wait for the suspension's end (seen in about half the runs
    of the queue-server test): so while the same run is still going, it is thrown in again
    every second, for up to 30 s. The stand is SAFE or ERROR: the watchdog has brought HV
    down, whatever the interrupted cleanup did."""
    if RE.state not in _PLAN_STATES:
        return
    engine: Any = RE
    _interrupt(RE, error, engine._task, retries=30)


_PLAN_STATES = ("running", "paused", "suspending", "pausing")


def _interrupt(RE: RunEngine, error: Exception, task: Any, retries: int) -> None:
    engine: Any = RE
    if engine._task is not task or RE.state not in _PLAN_STATES:
        return  # the run is over (or another one runs)
    with engine._state_lock:
        engine._exception = error
    if RE.state == "running" and task is not None and not task.done():
        task.cancel()
    if retries > 0:
        RE.loop.call_later(1.0, _interrupt, RE, error, task, retries - 1)


__all__ = ["DirectControl", "StandControl", "StandSafeError", "attach", "fail_plan", "stand_run"]
