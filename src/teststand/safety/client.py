"""What the watchdog knows of the controlling client: who it is, its heartbeat, its Channel
Access connection, the state of its RunEngine, and the E-stop.

The RunEngine side reports its state (bluesky's `RE.state`: idle, running, pausing, paused,
halting, stopping, aborting, suspending, panicked) on every change, from the RunEngine's own
`state_hook`. So `RE.halt()`, which skips every cleanup, is seen without any help of the halted
plan: the RunEngine reports `halting` as it begins. The report is remembered until the stand
next enters RUN, so a quick `halting` → `idle` is not missed between two checks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from teststand.errors import TeststandError

log = logging.getLogger(__name__)

RE_STATES = frozenset(
    {
        "idle",
        "running",
        "pausing",
        "paused",
        "halting",
        "stopping",
        "aborting",
        "suspending",
        "panicked",
    }
)
#: RunEngine states that end a plan without its cleanup.
_NO_CLEANUP = frozenset({"halting", "panicked"})


class ClientError(TeststandError, ValueError):
    """A client report the watchdog cannot use (an unknown RunEngine state)."""


@dataclass
class ClientMonitor:
    """The controlling client as the watchdog sees it; `clock` is monotonic seconds."""

    heartbeat_timeout: float
    paused_hv_hold: float
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self.owner: str | None = None
        self.connected = False
        self.re_state = "idle"
        self.last_heartbeat = self.clock()
        self.paused_since: float | None = None
        self.estop_by: str | None = None
        self.lost: str | None = None
        self.halted: str | None = None

    # -- reports from the IOC (CA hooks, PV writes) or, in direct mode, from the RunEngine --------
    def claim(self, owner: str) -> None:
        """`owner` (user@host:pid) takes control; its heartbeat is watched from now on."""
        log.info("control taken by %s", owner)
        self.owner, self.connected, self.lost = owner, True, None
        self.last_heartbeat = self.clock()

    def release(self, owner: str | None = None) -> None:
        """Control given back (by `owner`, when named and still the owner)."""
        if owner is None or owner == self.owner:
            log.info("control released by %s", self.owner)
            self.owner, self.connected = None, False

    def heartbeat(self) -> None:
        self.last_heartbeat = self.clock()

    def report(self, state: str) -> None:
        """The RunEngine's state, as `RE.state_hook` gives it."""
        state = str(state).lower()
        if state not in RE_STATES:
            raise ClientError(
                f"unknown RunEngine state {state!r}; one of {', '.join(sorted(RE_STATES))}"
            )
        if state == "paused" and self.re_state != "paused":
            self.paused_since = self.clock()
        elif state != "paused":
            self.paused_since = None
        if state in _NO_CLEANUP:
            self.halted = state
        self.re_state = state
        self.heartbeat()

    def entering_run(self) -> None:
        """The stand enters RUN at the controlling client's request: a halt reported before
        belongs to an earlier plan, and the request is a sign of life (the heartbeat's age,
        judged at every check in RUN, counts from here at the latest)."""
        self.halted = None
        self.heartbeat()

    def connection_lost(self, owner: str, why: str = "its connection closed") -> None:
        """The IOC saw the owner's Channel Access circuit close (a killed process)."""
        if owner == self.owner:
            self.connected, self.lost = False, f"the controlling client {owner}: {why}"
            log.warning("%s", self.lost)

    def estop(self, pressed: bool, who: str) -> None:
        self.estop_by = who if pressed else None
        log.warning("E-stop %s by %s", "pressed" if pressed else "released", who)

    # -- what the watchdog asks ---------------------------------------------------------------
    def pause_remaining(self, hv_up: bool) -> float | None:
        """Seconds a paused plan may still hold HV (None when not paused with HV up)."""
        if self.paused_since is None or not hv_up:
            return None
        return max(0.0, self.paused_hv_hold - (self.clock() - self.paused_since))

    def problems(self, running: bool, hv_up: bool) -> list[str]:
        """Reasons to act: the E-stop always; the rest while the stand is in RUN."""
        found: list[str] = []
        if self.estop_by is not None:
            found.append(f"E-stop pressed by {self.estop_by}")
        if not running:
            return found
        if self.owner is None:
            found.append("RUN without a controlling client")
            return found
        if self.lost is not None:
            found.append(f"{self.lost} (process killed?)")
        age = self.clock() - self.last_heartbeat
        if age > self.heartbeat_timeout:
            found.append(
                f"the controlling client {self.owner} sent no heartbeat for {age:.1f} s "
                f"(interlocks.heartbeat_timeout {self.heartbeat_timeout:g} s; hung or stopped?)"
            )
        if self.halted is not None:
            found.append(
                f"the RunEngine of {self.owner} went {self.halted} with the stand in RUN: "
                "RE.halt() or a crash, its plan's cleanup skipped"
            )
        remaining = self.pause_remaining(hv_up)
        if remaining is not None and remaining <= 0:
            found.append(
                f"a paused plan held HV for more than {self.paused_hv_hold:g} s "
                "(interlocks.paused_hv_hold)"
            )
        return found


__all__ = ["RE_STATES", "ClientError", "ClientMonitor"]
