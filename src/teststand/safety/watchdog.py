"""The interlock watchdog: every `interlocks.poll_period` (≥ 2 Hz), whatever the clients do, it
reads the stand, checks every condition and, when one holds, trips the state machine to SAFE
(ERROR when an instrument's state is unknown) and runs the safe action.

Client events (a heartbeat, a closed connection, `RE.halt()`, the E-stop) wake it at once.
A condition on one instrument's reading acts once the next reading of it agrees (asked for at
once: `Confirmation`). Silence (a link, a heartbeat) is timed by a `LiveClock`: a stall of this
process's own loop is no silence of the instruments or the client.
`request` and `reset` are the clients' transitions, refused with the reason when a condition
holds; the IOC serves them as PVs, a one-process stand calls them directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from teststand.config import ConfigError
from teststand.errors import InstrumentRefused
from teststand.safety.action import SafeOutcome, make_safe
from teststand.safety.client import ClientMonitor
from teststand.safety.clock import LiveClock
from teststand.safety.conditions import (
    ComplianceWatch,
    Confirmation,
    Finding,
    environment,
    hv_outside_run,
    links,
)
from teststand.safety.readings import Snapshot, StandReader
from teststand.safety.state import (
    StandState,
    StateError,
    StateMachine,
    Transition,
    parse_state,
)
from teststand.stand import TestStand

log = logging.getLogger(__name__)

CheckListener = Callable[["Watchdog"], None]


class Watchdog:
    """`await Watchdog(stand).start()` moves the stand to INIT and watches it until `stop()`."""

    def __init__(self, stand: TestStand, machine: StateMachine | None = None) -> None:
        self.stand = stand
        self.limits = stand.config.require_interlocks()
        self.machine = machine or StateMachine()
        self.clock = LiveClock(max_step=max(1.0, 4 * self.limits.poll_period))
        self.client = ClientMonitor(
            self.limits.heartbeat_timeout, self.limits.paused_hv_hold, clock=self.clock
        )
        self.reader = StandReader(stand, self.limits.poll_period, self.clock)
        self.compliance = ComplianceWatch(stand.config)
        self.confirmation = Confirmation()
        self.snapshot: Snapshot | None = None
        self.findings: list[Finding] = []
        self.pending: list[Finding] = []  # awaiting the next reading of their instrument
        self._reading_again: asyncio.Task[None] | None = None
        self.outcome: SafeOutcome | None = None
        self.checks = 0
        self._action: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._listeners: list[CheckListener] = []

    # -- life cycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Check the safe set point against the box's present dew point, enter INIT, watch."""
        snapshot = await self.reader.start(on_data=self.poke)
        setpoint, dew = self.limits.cooling.setpoint, snapshot.dew_point
        if setpoint is not None and dew is not None:
            floor = dew + self.limits.dew_point_margin
            if setpoint < floor:
                await self.reader.stop()
                raise ConfigError(
                    f"interlocks.cooling.setpoint: {setpoint:g} °C is below the box's dew point "
                    f"now plus the margin ({floor:.1f} °C); give a warmer safe set point"
                )
        await self._arm_chillers()
        if self.machine.state is StandState.OFF:
            self.machine.request(StandState.INIT, "watchdog", "instruments connected")
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="watchdog")

    async def _arm_chillers(self) -> None:
        """The chillers' own communication watchdog (and Safe Mode set point): if this process
        dies, each chiller stops, or holds the safe set point, `chiller_timeout` s later. Left
        armed on `stop()`: nothing watches the stand once the watchdog is gone."""
        setpoint = self.limits.cooling.setpoint
        for name, chiller in self.reader.chillers.items():
            try:
                if setpoint is not None:
                    await chiller.client.set_safe_setpoint(setpoint)
                await chiller.client.set_communication_timeout(self.limits.chiller_timeout)
            except InstrumentRefused as exc:
                if exc.code != "ERR_3":
                    raise
                log.warning(
                    "%s has no communication watchdog (ERR_3): if the IOC dies, it keeps its "
                    "set point until someone stops it",
                    name,
                )

    async def stop(self) -> None:
        """Stop watching (the safe action under way, if any, completes first)."""
        task, self._task = self._task, None
        if task is not None:
            self._stopping = True  # a cancellation alone can be lost in wait_for (3.11)
            self.poke()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.reader.stop()
        if self._reading_again is not None:
            self._reading_again.cancel()
        if self._action is not None:
            await asyncio.shield(self._action)

    def on_check(self, listener: CheckListener) -> None:
        """Call `listener(watchdog)` after every check (to update PVs)."""
        self._listeners.append(listener)

    def poke(self) -> None:
        """Check now (a client event arrived)."""
        self._wake.set()

    @property
    def acting(self) -> bool:
        return self._action is not None and not self._action.done()

    @property
    def hv_up(self) -> bool:
        snapshot = self.snapshot
        return snapshot is not None and snapshot.max_voltage >= self.limits.hv_safe_voltage

    @property
    def pause_remaining(self) -> float | None:
        """Seconds a paused plan may still hold HV, None when no plan is paused with HV up."""
        return self.client.pause_remaining(self.hv_up)

    # -- the clients' transitions ---------------------------------------------------------------
    async def request(self, target: StandState | str, who: str, why: str) -> Transition:
        """A client's transition, after a fresh check: READY and RUN only with every condition
        clear (a condition trips the stand instead), RUN only with a client in control, READY
        from RUN only with HV down."""
        new = parse_state(target)
        if new is StandState.RUN and self.client.owner is None:
            raise StateError("RUN refused: no client holds control; take control first")
        if new in (StandState.READY, StandState.RUN):
            await self._check_now()  # judged on the stand now
            if self.pending:
                raise StateError(
                    f"{new} refused: a reading awaits confirmation: "
                    + "; ".join(f.reason for f in self.pending)
                )
        if new is StandState.READY and self.machine.state is StandState.RUN and self.hv_up:
            raise StateError("READY refused: HV is still up; ramp every channel to 0 V first")
        if new is StandState.RUN:
            self.client.entering_run()
        transition = self.machine.request(new, who, why)
        self.poke()
        return transition

    async def reset(self, who: str, why: str) -> Transition:
        """Leave SAFE/ERROR for INIT once the safe action is done and, at a fresh check, every
        cause has cleared; refused (and logged) otherwise."""
        if self.acting:
            raise StateError("reset refused: the safe action is still under way; wait for it")
        await self._check_now()
        causes = [f.reason for f in self.findings + self.pending]
        return self.machine.reset(who, why, causes)

    async def _check_now(self) -> None:
        """A check on fresh readings of every instrument, a finding confirmed by one more."""
        await self.reader.refresh(self.reader.reads)
        self.check()
        if self.pending:
            await self.reader.refresh({f.source for f in self.pending if f.source})
            self.check()

    # -- the loop ------------------------------------------------------------------------------
    async def _loop(self) -> None:
        period = self.limits.poll_period
        while not self._stopping:
            started = time.monotonic()
            self.clock.tick()
            self._wake.clear()
            try:
                self.check()
            except Exception:
                log.exception("watchdog check failed")
            wait = max(0.0, period - (time.monotonic() - started))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    def check(self) -> list[Finding]:
        """Evaluate every condition on the latest readings; act when one holds."""
        snapshot = self.reader.snapshot()
        self.snapshot = snapshot
        findings, self.pending = self.confirmation.judge(
            environment(snapshot, self.limits), snapshot.answers
        )
        findings += links(self.reader.silent_for(), snapshot.failures, self.limits.link_timeout)
        findings += self.compliance.check(snapshot, self.limits.compliance_trip_time)
        if self.machine.state is not StandState.RUN:
            findings += hv_outside_run(snapshot, self.limits)
        findings += self._client_findings()
        self.findings = findings
        self.checks += 1
        if findings:
            self._act(findings)
        if self.pending:
            self._read_again({f.source for f in self.pending if f.source})
        for listener in list(self._listeners):
            try:
                listener(self)
            except Exception:
                log.exception("watchdog listener failed")
        return findings

    def _read_again(self, names: set[str]) -> None:
        """Read these instruments now (one read at a time), then check again."""
        if self._reading_again is not None and not self._reading_again.done():
            return

        async def again() -> None:
            await self.reader.refresh(names)
            self.poke()

        loop = asyncio.get_running_loop()
        self._reading_again = loop.create_task(again(), name="watchdog-confirm")

    def _client_findings(self) -> list[Finding]:
        running = self.machine.state is StandState.RUN
        return [Finding(p) for p in self.client.problems(running, self.hv_up)]

    def _act(self, findings: list[Finding]) -> None:
        error = any(f.error for f in findings)
        reason = "; ".join(f.reason for f in findings)
        state = StandState.ERROR if error else StandState.SAFE
        tripped = self.machine.trip(state, "watchdog", reason) is not None
        if self.acting:
            return
        hv_up_while_latched = self.machine.latched and self.hv_up and not tripped
        if tripped or hv_up_while_latched:
            self._action = asyncio.get_running_loop().create_task(self._safe(), name="safe")

    async def _safe(self) -> None:
        def step(text: str) -> None:
            log.warning("safe action: %s", text)

        outcome = await make_safe(self.stand, self.limits, step)
        await self.reader.refresh(self.reader.supplies)  # judge HV on readings taken after it
        self.outcome = outcome
        if outcome.hv_unknown:
            self.machine.trip(
                StandState.ERROR,
                "watchdog",
                f"HV could not be brought below {self.limits.hv_safe_voltage:g} V: "
                + "; ".join(outcome.problems),
            )
        elif outcome.problems:
            log.error("safe action finished with problems: %s", "; ".join(outcome.problems))
        self.poke()


__all__ = ["Watchdog"]
