"""Client puts: checked, then a move, a signal write or a verb on the device.

Every put needs control (`Control.check`). A put to a move PV (a device's set point) is the
device's `set()`: refused by `checks.check_move` before anything is written, and complete when
the move is (a ramp settled, a bath settled); a trip or switch-off during the ramp fails it. A
new move of the same HV channel (directly or through its slot) cancels the one in progress. A
put to a move's `…_WRITE` PV writes the set point alone (`checks.check_write`, the safety
hooks; no move), as the signal's `set()` does in direct mode. A
refusal or failure is written to the device's `…:MSG` PV and the stand's `MSG` PV as
`ErrorType: message`, then the put fails (a CA put error), so the client can say why.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from caproto import ChannelData
from ophyd_async.core import Device, SignalW, StandardMovable

from teststand.app.ioc.channels import WRITER, PutHandler, clip, decode, to_channel, to_signal
from teststand.app.ioc.checks import PutRefused, check_move, check_write
from teststand.app.ioc.control import Control
from teststand.devices._backend import RampInProgress, cancel_and_wait
from teststand.stand import TestStand
from teststand.stand.pvnames import SignalPV, VerbPV

log = logging.getLogger("teststand.ioc")
Refresh = Callable[[set[int], object], Awaitable[None]]
#: A check of a move put (the device, its target) added by a hook (safety: HV only in RUN).
MoveCheck = Callable[[Device, float], Awaitable[None]]


class Messages:
    """The `MSG` PVs: the stand's and each device's last refusal or failure."""

    def __init__(self, stand_channel: ChannelData, devices: dict[str, ChannelData]) -> None:
        self.stand = stand_channel
        self.devices = devices

    async def post(self, device_suffix: str, text: str) -> None:
        for channel in (self.devices.get(device_suffix), self.stand):
            if channel is not None:
                await channel.write(clip(text), verify_value=False)


def _move_key(device: Device) -> int:
    """Moves of a slot and of its HV channel exclude each other: both key on the channel."""
    return id(getattr(device, "hv_channel", device))


class Puts:
    def __init__(
        self, stand: TestStand, control: Control, messages: Messages, refresh: Refresh
    ) -> None:
        self.stand = stand
        self.control = control
        self.messages = messages
        self.refresh = refresh
        self.move_checks: list[MoveCheck] = []
        self._moves: dict[int, asyncio.Task[Any]] = {}
        self._cancelled: dict[int, str] = {}  # why a move was cancelled (else: superseded)
        #: zeros per channel key, and trips of the stand (`cancel_moves`): a move whose put
        #: arrived before one of them is refused
        self._zeros: dict[int, int] = {}
        self._trips = 0
        self._last_trip = ""

    def _affected(self, device: Device) -> set[int]:
        """The devices whose PVs a put to `device` changes: a slot and its HV channel go
        together (a channel's ramp moves its slot's bias)."""
        channel = getattr(device, "hv_channel", device)
        slots = {id(slot) for slot in self.stand.slots.values() if slot.hv_channel is channel}
        return {id(device), id(channel)} | slots

    async def _guarded(self, device_suffix: str, what: str, action: Awaitable[Any]) -> None:
        try:
            await action
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            text = f"{type(exc).__name__}: {exc}"
            log.warning("put refused or failed (%s by %s): %s", what, WRITER.get(), text)
            await self.messages.post(device_suffix, text)
            raise
        await self.messages.post(device_suffix, "")

    def for_signal(self, spec: SignalPV, datatype: type, *, alone: bool = False) -> PutHandler:
        """The put handler of the signal's PV (`alone`: of a move's `…_WRITE` PV)."""

        async def put(raw: Any) -> Any:
            value = to_signal(datatype, raw)
            what = f"{spec.write_suffix if alone else spec.suffix} = {value!r}"
            write = self._write_alone(spec, value) if alone else self._write(spec, value)
            await self._guarded(spec.device_suffix, what, write)
            return to_channel(datatype, value)

        return put

    async def _write_alone(self, spec: SignalPV, value: Any) -> None:
        self.control.check()
        device = spec.device
        try:
            await check_write(self.stand, device, float(value))
            for check in self.move_checks:
                await check(device, float(value))
            assert isinstance(spec.signal, SignalW)
            await spec.signal.set(value)
        finally:
            await self.refresh(self._affected(device), spec.signal)

    async def _write(self, spec: SignalPV, value: Any) -> None:
        self.control.check()
        device = spec.device
        try:
            if spec.move:
                epoch = self._epoch(device)
                await check_move(self.stand, device, float(value))
                for check in self.move_checks:
                    await check(device, float(value))
                await self._move(device, float(value), epoch)
            elif isinstance(spec.signal, SignalW):
                await spec.signal.set(value)
        finally:  # a failed move (a trip) changed the device too: its PVs say how
            await self.refresh(self._affected(device), spec.signal)

    def _epoch(self, device: Device) -> tuple[int, int]:
        return self._zeros.get(_move_key(device), 0), self._trips

    async def _move(self, device: Device, target: float, epoch: tuple[int, int]) -> None:
        """Move, unless the channel was zeroed or the stand tripped since the put arrived
        (`epoch`: `_epoch` then): a suspended plan's zero, or the safe action, must not be
        undone by a move that was still being checked."""
        assert isinstance(device, StandardMovable)
        key = _move_key(device)
        previous = self._moves.get(key)
        if previous is not None:
            await cancel_and_wait(previous)
        ramp = RampInProgress.of(device)
        if ramp is not None:
            await ramp.cancel()  # a slot's move in progress holds the channel's ramp
        zeros, trips = epoch
        if target != 0 and self._trips != trips:  # a move to 0 V undoes no safe action
            raise PutRefused(f"{device.name}: the move to {target} was {self._last_trip}")
        if self._zeros.get(key, 0) != zeros:
            raise PutRefused(
                f"{device.name}: the move to {target} was cancelled: the channel was zeroed "
                "after the put arrived"
            )
        task = asyncio.ensure_future(self._set(device, target))
        self._moves[key] = task
        self._cancelled.pop(key, None)
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled():
                why = self._cancelled.pop(key, "superseded by a newer set point")
                raise PutRefused(f"{device.name}: the move to {target} was {why}") from None
            raise

    def cancel_moves(self, why: str) -> None:
        """Cancel every move in progress: each put fails at once saying `why` (a trip: the safe
        action owns the outputs now, no put waits for a target it will never reach); moves
        still being checked are refused."""
        self._trips += 1
        self._last_trip = why
        for key, task in self._moves.items():
            if not task.done():
                self._cancelled[key] = why
                task.cancel()

    @staticmethod
    async def _set(device: StandardMovable[float], target: float) -> None:
        await device.set(target)

    def for_verb(self, spec: VerbPV) -> PutHandler:
        async def put(raw: Any) -> Any:
            await self._guarded(spec.device_suffix, spec.suffix, self._run_verb(spec, raw))
            return raw

        return put

    def _zeroing(self, device: Device) -> None:
        """A channel's zero supersedes its moves: the one in progress and those still checked."""
        key = _move_key(device)
        self._zeros[key] = self._zeros.get(key, 0) + 1
        task = self._moves.get(key)
        if task is not None and not task.done():
            self._cancelled[key] = "cancelled: the channel was zeroed"
            task.cancel()

    async def _run_verb(self, spec: VerbPV, raw: Any) -> None:
        self.control.check()
        if spec.verb == "zero":
            self._zeroing(spec.device)
        method = getattr(spec.device, spec.verb)
        if spec.arguments:
            text = decode(raw)
            try:
                arguments = json.loads(text or "{}")
            except json.JSONDecodeError as exc:
                raise PutRefused(
                    f"{spec.suffix}: {text!r} is not a JSON object of arguments ({exc})"
                ) from None
            if not isinstance(arguments, dict):
                raise PutRefused(f"{spec.suffix}: give a JSON object of keyword arguments")
            await method(**arguments)
        else:
            await method()
        await self.refresh(self._affected(spec.device), None)
