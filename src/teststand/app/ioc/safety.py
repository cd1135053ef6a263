"""The stand's state machine and interlock watchdog in the IOC (`teststand.safety`), as PVs.

| PV (under the prefix) | access | meaning |
|---|---|---|
| `STATE` | r | OFF, INIT, READY, RUN, SAFE, ERROR |
| `STATE:REASON` | r | why the stand is in that state |
| `STATE:LOG` | r | the last transition: time, old -> new, who, why |
| `STATE:CMD` | control | `READY`, `RUN`, `INIT`, `OFF` or `RESET`, then optionally why |
| `STATE:MSG` | r | the last refused command and why |
| `CLIENT:HEARTBEAT` | control | any put: the controlling client is alive |
| `CLIENT:RE_STATE` | control | its RunEngine's state (`RE.state_hook`) |
| `ESTOP` | anyone | 1 presses the E-stop (SAFE at once), 0 releases it (then reset) |
| `PAUSE:REMAINING` | r | s a paused plan may still hold HV (-1: none) |
| `WATCHDOG:CHECKS` | r | checks done (it counts at ≥ 2 Hz while the watchdog lives) |

The controlling client is the IOC's (`Control`): its circuit closing is the client gone. A move
put that would raise HV above `interlocks.hv_safe_voltage` is refused unless the stand is in RUN;
a trip (SAFE or ERROR) cancels every move in progress, whose puts fail saying so.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from caproto import ChannelData
from ophyd_async.core import Device

from teststand.app.ioc.channels import (
    WRITER,
    ServedDouble,
    ServedEnum,
    ServedInteger,
    clip,
    decode,
    text_channel,
)
from teststand.app.ioc.checks import PutRefused
from teststand.app.ioc.control import Owner
from teststand.app.ioc.server import StandIOC
from teststand.devices.caen import CaenChannel
from teststand.safety import StandState, StateError, Transition, Watchdog
from teststand.safety.state import parse_state
from teststand.stand import ModuleSlot

log = logging.getLogger("teststand.ioc")
STATES = tuple(state.value for state in StandState)


def _text(raw: Any) -> str:
    return decode(raw).strip("\0 ").strip()


class SafetyPVs:
    """The watchdog of `ioc.stand` served under `ioc.prefix` (see the module's docstring)."""

    def __init__(self, ioc: StandIOC) -> None:
        self.ioc = ioc
        self.watchdog = Watchdog(ioc.stand)  # ConfigError without a complete `interlocks:`
        self.state = ServedEnum(enum_strings=STATES, value=StandState.OFF.value)
        self.reason = text_channel(self.watchdog.machine.reason)
        self.last = text_channel()
        self.message = text_channel()
        self.command = text_channel()
        self.heartbeat = ServedInteger(value=0)
        self.re_state = text_channel("idle")
        self.estop = ServedEnum(enum_strings=("False", "True"), value="False")
        self.remaining = ServedDouble(value=-1.0, units="s", precision=1)
        self.checks = ServedInteger(value=0)
        self.command.on_put = self._command
        self.heartbeat.on_put = self._heartbeat
        self.re_state.on_put = self._re_state
        self.estop.on_put = self._estop
        self._pending: set[asyncio.Task[Any]] = set()

    def pvs(self) -> dict[str, ChannelData]:
        return {
            "STATE": self.state,
            "STATE:REASON": self.reason,
            "STATE:LOG": self.last,
            "STATE:CMD": self.command,
            "STATE:MSG": self.message,
            "CLIENT:HEARTBEAT": self.heartbeat,
            "CLIENT:RE_STATE": self.re_state,
            "ESTOP": self.estop,
            "PAUSE:REMAINING": self.remaining,
            "WATCHDOG:CHECKS": self.checks,
        }

    # ---- the clients' puts ----

    def _who(self) -> str:
        owner = self.ioc.control.owner
        writer = WRITER.get()
        if owner is not None and writer is not None and self.ioc.control.holds(writer):
            return _owner_id(owner)
        return str(writer) if writer is not None else "ioc"

    async def _command(self, raw: Any) -> Any:
        text = _text(raw)
        verb, _, why = text.partition(" ")
        try:
            self.ioc.control.check()
            who = self._who()
            if verb.upper() == "RESET":
                await self.watchdog.reset(who, why or "reset")
            else:
                await self.watchdog.request(parse_state(verb), who, why or f"{verb} requested")
        except Exception as exc:
            await self.message.write(clip(f"{type(exc).__name__}: {exc}"), verify_value=False)
            raise
        await self.message.write("", verify_value=False)
        return raw

    async def _heartbeat(self, raw: Any) -> Any:
        self.ioc.control.check()
        self.watchdog.client.heartbeat()
        return raw

    async def _re_state(self, raw: Any) -> Any:
        self.ioc.control.check()
        self.watchdog.client.report(_text(raw))
        self.watchdog.poke()
        return raw

    async def _estop(self, raw: Any) -> Any:
        pressed = raw in ("True", 1, b"True") or _text(raw) in ("1", "True")
        self.watchdog.client.estop(pressed, str(WRITER.get() or "ioc"))
        self.watchdog.poke()
        return raw

    # ---- HV only in RUN ----

    async def check_move(self, device: Device, target: float) -> None:
        if not isinstance(device, CaenChannel | ModuleSlot):
            return
        if target >= self.watchdog.limits.hv_safe_voltage and not self.watchdog.machine.hv_allowed:
            machine = self.watchdog.machine
            raise PutRefused(
                f"{device.name}: {target} V refused: HV may be raised only in RUN; the stand is "
                f"{machine.state} ({machine.reason}); put RUN to STATE:CMD first"
            )

    # ---- updates of the PVs ----

    def _schedule(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _on_transition(self, transition: Transition) -> None:
        if transition.new in (StandState.SAFE, StandState.ERROR) and self.ioc.puts is not None:
            self.ioc.puts.cancel_moves(f"cancelled: the stand went {transition.new.value}")
        self._schedule(self._show(transition))

    async def _show(self, transition: Transition) -> None:
        await self.reason.write(clip(transition.why), verify_value=False)
        await self.last.write(clip(str(transition)), verify_value=False)
        await self.state.write(transition.new.value, verify_value=False)

    def _on_check(self, watchdog: Watchdog) -> None:
        remaining = watchdog.pause_remaining
        value = -1.0 if remaining is None else round(remaining, 1)
        if value != self.remaining.value:
            self._schedule(self.remaining.write(value, verify_value=False))
        if watchdog.checks % 4 == 0:
            self._schedule(self.checks.write(watchdog.checks, verify_value=False))

    def _on_control(self, event: str, owner: Owner) -> None:
        client = self.watchdog.client
        if event in ("claim", "takeover"):
            client.claim(_owner_id(owner))
        elif event == "release":
            client.release(_owner_id(owner))
        elif event == "lost":
            client.connection_lost(_owner_id(owner), "its Channel Access connection closed")
        self.watchdog.poke()

    async def run(self) -> None:
        """The watchdog for the IOC's lifetime (its start failing stops the IOC)."""
        machine = self.watchdog.machine
        machine.subscribe(self._on_transition)
        self.watchdog.on_check(self._on_check)
        self.ioc.control.listeners.append(self._on_control)
        await self.watchdog.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.watchdog.stop()


def _owner_id(owner: Owner) -> str:
    return f"{owner.writer.user}@{owner.writer.host} {owner.description} ({owner.writer.address})"


def plug_in(ioc: StandIOC) -> None:
    """The IOC hook: serve the safety PVs, check HV puts, run the watchdog."""
    safety = SafetyPVs(ioc)
    ioc.add_pvs(safety.pvs())
    assert ioc.puts is not None, "plug_in runs after setup()"
    ioc.puts.move_checks.append(safety.check_move)
    ioc.add_task(safety.run)


__all__ = ["SafetyPVs", "StateError", "plug_in"]
