"""The stand's state machine: OFF → INIT → READY ⇄ RUN, and the latched SAFE and ERROR.

- `OFF`: the instruments are not connected yet. `INIT`: connected, outputs off.
- `READY`: cooling and LV may be on, HV at 0 V. `RUN`: a client with control may raise HV.
- `SAFE`: an interlock or the watchdog acted. `ERROR`: the state of an instrument is unknown.

SAFE and ERROR are latched: only `reset` leaves them (to INIT), and only once every cause has
cleared. Every transition is kept with who asked and why, and logged.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

from teststand.errors import TeststandError

log = logging.getLogger(__name__)


class StandState(StrEnum):
    OFF = "OFF"
    INIT = "INIT"
    READY = "READY"
    RUN = "RUN"
    SAFE = "SAFE"
    ERROR = "ERROR"


LATCHED = frozenset({StandState.SAFE, StandState.ERROR})

#: The transitions a client may ask for; SAFE/ERROR come from `trip`, INIT after them from `reset`.
REQUESTABLE: dict[StandState, frozenset[StandState]] = {
    StandState.OFF: frozenset({StandState.INIT}),
    StandState.INIT: frozenset({StandState.READY, StandState.OFF}),
    StandState.READY: frozenset({StandState.RUN, StandState.INIT}),
    StandState.RUN: frozenset({StandState.READY}),
    StandState.SAFE: frozenset(),
    StandState.ERROR: frozenset(),
}


class StateError(TeststandError):
    """A transition the state machine refuses; the message says what is possible instead."""


@dataclass(frozen=True)
class Transition:
    time: float
    old: StandState
    new: StandState
    who: str
    why: str

    def __str__(self) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self.time))
        return f"{stamp} {self.old} -> {self.new} by {self.who}: {self.why}"


Listener = Callable[[Transition], None]


class StateMachine:
    """The stand's state, its reason, and the history of transitions (newest last)."""

    def __init__(self, history: int = 1000) -> None:
        self.state = StandState.OFF
        self.reason = "not connected"
        self.history: deque[Transition] = deque(maxlen=history)
        self._listeners: list[Listener] = []

    @property
    def hv_allowed(self) -> bool:
        """HV may be raised only in RUN."""
        return self.state is StandState.RUN

    @property
    def latched(self) -> bool:
        return self.state in LATCHED

    def subscribe(self, listener: Listener) -> None:
        """Call `listener(transition)` after every transition."""
        self._listeners.append(listener)

    def request(self, target: StandState | str, who: str, why: str) -> Transition:
        """A client's transition: OFF→INIT→READY⇄RUN, READY→INIT, INIT→OFF."""
        new = parse_state(target)
        if new in LATCHED:
            raise StateError(f"{new} is entered by the watchdog or an E-stop, not requested")
        if self.latched:
            raise StateError(
                f"the stand is {self.state} ({self.reason}): reset it once the cause has cleared"
            )
        allowed = REQUESTABLE[self.state]
        if new not in allowed:
            names = ", ".join(sorted(allowed)) or "none"
            raise StateError(f"{self.state} -> {new} is not a transition; from here: {names}")
        return self._move(new, who, why)

    def trip(self, state: StandState, who: str, why: str) -> Transition | None:
        """Enter SAFE or ERROR (ERROR also from SAFE); None when already there (the first reason
        stays)."""
        if state not in LATCHED:
            raise StateError(f"trip goes to SAFE or ERROR, not {state}")
        if self.state is state or self.state is StandState.ERROR:
            return None
        return self._move(state, who, why)

    def reset(self, who: str, why: str, causes: Iterable[str]) -> Transition:
        """Leave SAFE/ERROR for INIT; refused while any of `causes` (the active conditions)
        persists."""
        if not self.latched:
            raise StateError(f"the stand is {self.state}, not SAFE or ERROR: nothing to reset")
        active = list(causes)
        if active:
            log.warning("reset by %s refused: %s", who, "; ".join(active))
            raise StateError(
                f"reset refused: the cause persists: {'; '.join(active)}; clear it and reset again"
            )
        return self._move(StandState.INIT, who, f"reset: {why}")

    def _move(self, new: StandState, who: str, why: str) -> Transition:
        transition = Transition(time.time(), self.state, new, who, why)
        self.state, self.reason = new, why
        self.history.append(transition)
        level = logging.WARNING if new in LATCHED else logging.INFO
        log.log(level, "stand state %s", transition)
        for listener in list(self._listeners):
            try:
                listener(transition)
            except Exception:
                log.exception("state listener failed on %s", transition)
        return transition


def parse_state(value: StandState | str) -> StandState:
    """`StandState` from its name (any case)."""
    try:
        return StandState(str(value).upper())
    except ValueError:
        names = ", ".join(s.value for s in StandState)
        raise StateError(f"unknown stand state {value!r}; states: {names}") from None


__all__ = [
    "LATCHED",
    "StandState",
    "StateError",
    "StateMachine",
    "Transition",
    "parse_state",
]
