"""The stand over Channel Access (`server: {prefix: TS1:}` in the stand file).

The same `TestStand` as the direct one (the same device classes, so the same names, data keys,
hints and roles), with every signal connected by ophyd-async's CA backend (`StrictCaBackend`)
to the PV the IOC serves it under (`pvnames.walk`, used by both ends). A device's move is one
put with completion to its set point PV: the IOC checks it, moves and completes the put when the
move is done (the device's own checks also run here first, for an early message). A write of
the set point signal itself goes to the `…_WRITE` PV, which writes it alone as in direct mode
(the plans load set points before they power the TECs or start the chiller). Verbs
(`trigger`, `configure_iv`, the chiller's `start`) are puts to their command PVs.

On connect the client claims control of the stand (`stand.control`); a second client fails
naming the owner; after an IOC restart it claims it again. `close()` releases it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
from dataclasses import dataclass
from typing import Any

from aioca import CANothing
from ophyd_async.core import (
    AsyncStatus,
    Device,
    DeviceConnector,
    MovableLogic,
    NotConnectedError,
    SignalConnector,
    StandardMovable,
    TimeoutCalculator,
)

from teststand.config import StandConfig
from teststand.devices._backend import RampInProgress
from teststand.stand.ca import (
    ServerUnavailable,
    StrictCaBackend,
    message_pv,
    put_checked,
    read_text,
)
from teststand.stand.control import ControlKeeper, claim_control, release_control
from teststand.stand.pvnames import walk

#: Seconds a verb (a reading, a reset) may take on the IOC, connection included; VSET 0 is
#: quick, and the safe state must not wait long for an IOC that is gone.
VERB_TIMEOUT = 30.0
ZERO_TIMEOUT = 5.0
#: A URL for the instruments' protocol clients, which a served stand never opens.
UNUSED_URL = "tcp://127.0.0.1:9"


@dataclass
class RemoteMove(MovableLogic[float]):
    """A move done by the IOC: the device's checks here, then a put that completes with it."""

    inner: MovableLogic[float]
    #: The move's PV (the set point signal itself writes to its `…_WRITE` twin).
    pv: str = ""
    #: The HV channel's move in progress, held here too, so that its `zero()` cancels this move
    #: as it does a direct one.
    ramp: RampInProgress | None = None

    async def check_move(self, new_position: float) -> None:
        await self.inner.check_move(new_position)

    async def calculate_timeout(self, old_position: float, new_position: float) -> float | None:
        return await self.inner.calculate_timeout(old_position, new_position)

    async def move(self, new_position: float, timeout: TimeoutCalculator) -> None:
        with self.ramp.held() if self.ramp is not None else contextlib.nullcontext():
            await put_checked(self.pv, float(new_position), timeout=timeout())

    async def stop(self) -> None:
        """Hold the present value (a new move cancels the IOC's move)."""
        await put_checked(self.pv, await self.readback.get_value(), wait=False)


def _verb(device: Device, name: str, pv: str, arguments: bool) -> Any:
    signature = inspect.signature(getattr(type(device), name))
    ramp = RampInProgress.of(device) if name == "zero" else None

    @AsyncStatus.wrap
    async def call(*args: Any, **kwargs: Any) -> None:
        if ramp is not None:
            await ramp.cancel()  # the move's put waiting here; the IOC cancels its side
        if arguments:
            bound = signature.bind(device, *args, **kwargs).arguments
            bound.pop(next(iter(signature.parameters)))  # self
            await put_checked(pv, json.dumps(bound), timeout=VERB_TIMEOUT)
        else:
            await put_checked(pv, 1, timeout=ZERO_TIMEOUT if name == "zero" else VERB_TIMEOUT)

    return call


def serve_over_ca(stand: Device, prefix: str) -> None:
    """Point every signal of `stand` at its PV and every move and verb at the IOC."""
    signals, verbs = walk(stand)
    for spec in signals:
        pv, write_pv = prefix + spec.suffix, prefix + spec.write_suffix
        backend: StrictCaBackend[Any] = StrictCaBackend(spec.signal.datatype, pv, write_pv)
        spec.signal._connector = SignalConnector(backend)
    for verb in verbs:
        pv = prefix + verb.suffix
        # the verb's name is a bluesky protocol's, which Device.__setattr__ guards
        object.__setattr__(
            verb.device, verb.verb, _verb(verb.device, verb.verb, pv, verb.arguments)
        )
    for spec in signals:
        device = spec.device
        if spec.move and isinstance(device, StandardMovable):
            inner = device.movable_logic
            logic = RemoteMove(
                setpoint=inner.setpoint,
                readback=inner.readback,
                inner=inner,
                pv=prefix + spec.suffix,
                ramp=RampInProgress.of(device),
            )
            device.__dict__["movable_logic"] = logic  # the cached_property's slot
    for _, child in stand.children():
        if not isinstance(child._connector, SignalConnector):
            child._connector = DeviceConnector()


async def connect_served(stand: Device, config: StandConfig) -> ControlKeeper:
    """Claim control, then connect every signal to its PV; the keeper claims control again
    after an IOC restart."""
    assert config.server is not None
    prefix, timeout = config.server.prefix, config.server.connect_timeout
    await claim_control(prefix, timeout)
    messages = {message_pv(prefix + spec.suffix) for spec in walk(stand)[0]}
    try:
        await stand.connect(timeout=timeout)
        # connect the MSG PVs too, so a refusal's reason is at hand (also after a reconnect)
        await asyncio.gather(*(read_text(pv, timeout=timeout) for pv in messages))
    except (NotConnectedError, CANothing) as exc:
        await release_control(prefix)
        raise ServerUnavailable(
            f"the IOC for {prefix} does not serve every PV of this stand file ({exc}); serve "
            "the same stand file (teststand ioc)"
        ) from None
    return ControlKeeper.start(prefix)
