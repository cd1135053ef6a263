"""What collectors and processing devices share as caproto servers."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from caproto import ChannelType, EventCancelResponse
from caproto.asyncio.server import AsyncioEvent, Context, VirtualCircuit

log = logging.getLogger(__name__)

#: Unsent updates of one PV a subscription keeps (caproto's default: 1000): a client more
#: than this many updates of one PV behind loses the oldest (EPICS's own server keeps fewer).
#: caproto also kept them once sent (`Circuit.send` forgets those): with its default a monitor
#: of the stand's 268 PVs grew the IOC by 100 MB (about 0.4 kB an update).
SUBSCRIPTION_BACKLOG = 20
#: pvproperty arguments of a text PV (a char array that `caget -S` and aioca read as a string).
TEXT: dict[str, Any] = {"dtype": ChannelType.CHAR, "max_length": 512, "string_encoding": "latin-1"}


def ready_hook(on_ready: Callable[[], None] | None) -> Callable[[Any], Awaitable[None]]:
    """caproto's `startup_hook`: `on_ready()` once the server's sockets are bound."""

    async def hook(async_lib: Any) -> None:
        if on_ready is not None:
            on_ready()

    return hook


class WriteEvent(AsyncioEvent):  # type: ignore[misc]
    """caproto's "no write in progress" event, which a circuit's read awaits (up to 1 ms) before
    it answers: when no write is in progress it answers at once. caproto's wait goes through
    `asyncio.wait_for`, a task and a loop turn even when the event is set, so the reads queued
    on one circuit were answered one per turn of the IOC's loop; on a loaded machine (turns of
    50 ms) a baseline's hundred reads took more than the client's 8 s read timeout."""

    async def wait(self, timeout: float | None = None) -> bool:
        if self.is_set():
            return True
        return bool(await super().wait(timeout))


class Circuit(VirtualCircuit):  # type: ignore[misc]
    """caproto's asyncio circuit, which forgets the updates it sent and whose update sender
    stops when its client leaves.

    caproto 1.3 waits for the next update with `asyncio.wait_for`, which in Python 3.11 swallows
    a cancel arriving with an update: when a client left while its PVs updated, the sender went
    on waiting for updates that no longer came, the disconnect waited for it, and the circuit
    stayed in the server for good with its last updates of every PV it watched (0.8 MB for a
    monitor of the stand): 2 of 6 such monitors, 1-4 of 20 clients in the test.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.write_event = WriteEvent()

    async def send(self, *commands: Any) -> None:
        """Send, then forget the subscription updates sent, and a cancelled subscription's.
        caproto keeps each subscription's last `SUBSCRIPTION_BACKLOG` updates (to drop the oldest
        unsent ones of a client that falls behind) also once sent, and after the subscription is
        cancelled, for the circuit's life: a PV posted only on change filled that over hours,
        and every plan's subscribe and cancel (ophyd-async's waits) left its last updates."""
        await super().send(*commands)
        for command in commands:
            subscription = getattr(command, "subscriptionid", None)
            if isinstance(command, EventCancelResponse):
                self.unexpired_updates.pop(subscription, None)
                continue
            kept = self.unexpired_updates.get(subscription)
            if kept and kept[0] is command:  # sent in order: the oldest one still kept
                kept.popleft()

    async def get_from_sub_queue(self, timeout: float | None = None) -> Any:
        try:
            async with asyncio.timeout(timeout):
                return await self.subscription_queue.get()
        except TimeoutError:
            return None


class ServerContext(Context):  # type: ignore[misc]
    """caproto's asyncio server with TCP_NODELAY on every client's circuit and a backlog of
    `SUBSCRIPTION_BACKLOG` updates per subscription.

    caproto binds its listening sockets without naming IPPROTO_TCP, so asyncio leaves Nagle on
    for the connections it accepts: a reply written in two segments (a read's response after an
    update) waited for the client's delayed ACK, about 40 ms a round trip (48 ms per read of a
    slot over CA, against 5 ms with it)."""

    CircuitClass = Circuit

    def __init__(self, pvdb: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        for channel in pvdb.values():
            channel.max_subscription_backlog = min(
                channel.max_subscription_backlog, SUBSCRIPTION_BACKLOG
            )
        super().__init__(pvdb, *args, **kwargs)

    async def tcp_handler(self, client: Any, addr: Any) -> None:
        sock = client.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            await super().tcp_handler(client, addr)
        except Exception as error:  # caproto has logged it
            log.warning("the circuit of %s:%d ended with %r", *addr[:2], error)
        finally:
            # However the handler ended, its circuit leaves the server: under load caproto's
            # disconnect, which cancels and awaits the update sender also from the sender
            # itself, failed ("await wasn't used with future") before removing the circuit.
            for circuit in [c for c in self.circuits if c.client is client]:
                self.circuits.discard(circuit)
                await circuit.tasks.cancel_all()
