"""`CAControl`: a RunEngine session's side of the IOC's state machine, over Channel Access.

The IOC serves `STATE`, `STATE:REASON`, `STATE:CMD`, `CLIENT:HEARTBEAT` and `CLIENT:RE_STATE`
(see `teststand.app.ioc.safety`); this session must hold control (a served `build()` claims it).
Reports and heartbeats are puts without completion, in order, from the RunEngine's loop.
`reset_served(prefix, why)` takes a latched stand back to READY (the client must hold control).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aioca import DBR_CHAR_STR, FORMAT_TIME, Subscription, caget, camonitor

from teststand.errors import TeststandError
from teststand.safety.runengine import StateCallback
from teststand.safety.state import StandState, StateError
from teststand.stand.ca import put_checked, read_text

log = logging.getLogger(__name__)


class CAControl:
    """`await CAControl.connect("TS1:", who, loop)`: the state follows `STATE` by a monitor."""

    def __init__(self, prefix: str, who: str, loop: asyncio.AbstractEventLoop) -> None:
        self.prefix = prefix
        self.who = who
        self.loop = loop
        self._state = StandState.OFF
        self._reason = ""
        self._callbacks: list[StateCallback] = []
        self._subscriptions: list[Subscription] = []

    @classmethod
    async def connect(cls, prefix: str, who: str) -> CAControl:
        control = cls(prefix, who, asyncio.get_running_loop())
        # read now: a plan started at once must not act on the monitor's first update to come
        control._state = StandState(str(await caget(prefix + "STATE", datatype=str)))
        control._reason = await read_text(prefix + "STATE:REASON")
        control._subscriptions = [
            camonitor(prefix + "STATE", control._on_state, datatype=str, format=FORMAT_TIME),
            # a char array: as a 40-byte CA string it was cut, even inside a "°"
            camonitor(prefix + "STATE:REASON", control._on_reason, datatype=DBR_CHAR_STR),
        ]
        return control

    def close(self) -> None:
        for subscription in self._subscriptions:
            subscription.close()

    def _on_reason(self, value: Any) -> None:
        self._reason = str(value)

    def _on_state(self, value: Any) -> None:
        state = StandState(str(value))
        if state is self._state:
            return
        self._state = state
        if state in (StandState.SAFE, StandState.ERROR):  # the reason may lag the state
            self.loop.create_task(self._tell_latched(state))
        else:
            for callback in list(self._callbacks):
                callback(state, self._reason)

    async def _tell_latched(self, state: StandState) -> None:
        try:
            self._reason = await read_text(self.prefix + "STATE:REASON")
        except Exception as exc:
            log.warning("cannot read the IOC's reason: %s", exc)
        for callback in list(self._callbacks):
            callback(state, self._reason)

    def state(self) -> tuple[StandState, str]:
        return self._state, self._reason

    async def request(self, state: StandState, why: str) -> None:
        try:
            await put_checked(self.prefix + "STATE:CMD", f"{state.value} {why}")
        except StateError:
            raise
        except Exception as exc:  # the IOC's refusal as another type: still a refusal
            raise StateError(str(exc)) from None
        self._state = state  # the monitor confirms it

    def _put(self, suffix: str, value: Any) -> None:
        async def put() -> None:
            try:
                await put_checked(self.prefix + suffix, value, wait=False)
            except Exception as exc:
                log.warning("%s%s: %s", self.prefix, suffix, exc)

        self.loop.call_soon_threadsafe(lambda: self.loop.create_task(put()))

    def report(self, re_state: str) -> None:
        self._put("CLIENT:RE_STATE", re_state)

    def heartbeat(self) -> None:
        self._put("CLIENT:HEARTBEAT", 1)

    def subscribe(self, callback: StateCallback) -> None:
        self._callbacks.append(callback)


async def reset_served(prefix: str, why: str) -> str:
    """SAFE/ERROR -> INIT -> READY on the IOC at `prefix`, releasing its E-stop first; the
    IOC's refusal (a cause that persists, no control) is raised as its `StateError`."""
    released = bool(int(await caget(prefix + "ESTOP")))
    if released:
        await put_checked(prefix + "ESTOP", 0)
    try:
        await put_checked(prefix + "STATE:CMD", f"RESET {why}")
        await put_checked(prefix + "STATE:CMD", f"READY {why}")
    except StateError:
        raise
    except TeststandError as exc:  # refused for control: say so as it is
        raise StateError(str(exc)) from None
    done = "E-stop released, reset" if released else "reset"
    return f"{done}: the stand is READY"


__all__ = ["CAControl", "reset_served"]
