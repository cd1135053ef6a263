"""The one base of the instrument devices: a protocol client adopted or owned, opened on connect,
released by `close()`; and `on()`/`off()` for instruments with a switchable output."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from ophyd_async.core import AsyncStatus, SignalRW, StandardReadable

from teststand.devices._backend import ClientConnector
from teststand.devices._client import ProtocolClient

ClientT = TypeVar("ClientT", bound=ProtocolClient)


class InstrumentDevice(StandardReadable, Generic[ClientT]):
    """An ophyd-async device over one instrument's protocol client.

    A subclass calls `self.adopt(url_or_client, make)` first (its signals need the client),
    builds its signals, then `super().__init__(name=name)`. Given a URL, the device makes its
    client and owns it: the client takes the device's name when `init_devices()` names it, so
    link errors name the device the user knows. Given a client, the device shares it.
    """

    client: ClientT

    def adopt(self, url_or_client: str | ClientT, make: Callable[[str], ClientT]) -> ClientT:
        """The device's client: `url_or_client` itself, or `make(url)` for a URL."""
        self._owns_client = isinstance(url_or_client, str)
        self.client = make(url_or_client) if isinstance(url_or_client, str) else url_or_client
        return self.client

    def __init__(self, name: str = "") -> None:
        connector = ClientConnector(self.client, adopt_name=self._owns_client)
        super().__init__(name=name, connector=connector)

    async def close(self) -> None:
        """Release the instrument (its transport and lock)."""
        await self.client.close()


class SwitchedOutput:
    """`on()` and `off()` of a device whose `output` signal switches what it delivers."""

    output: SignalRW[bool]

    @AsyncStatus.wrap
    async def on(self) -> None:
        await self.output.set(True)

    @AsyncStatus.wrap
    async def off(self) -> None:
        await self.output.set(False)
