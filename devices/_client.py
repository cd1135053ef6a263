"""The base of every protocol client: owns one transport, opened on connect, typed errors."""

from __future__ import annotations

from typing import Any

from teststand.errors import TeststandError
from teststand.transport import Transport, connect


class NotConnected(TeststandError):
    """A client used before its device was connected."""


class ProtocolClient:
    """An async client of one instrument. `open()` connects, `close()` releases the instrument.

    `link_defaults` are the instrument's transport defaults (terminator, baud rate, …); options in
    the URL override them.
    """

    def __init__(self, url: str, *, name: str, **link_defaults: Any) -> None:
        self.url = url
        self.name = name
        self._link_defaults = link_defaults
        self._transport: Transport | None = None

    @property
    def transport(self) -> Transport:
        if self._transport is None:
            raise NotConnected(
                f"{self.name} ({self.url}) is not connected; connect the device first "
                "(init_devices() or `await device.connect()`)"
            )
        return self._transport

    async def open(self) -> None:
        if self._transport is not None:
            return
        self._transport = await connect(self.url, name=self.name, **self._link_defaults)
        try:
            await self.on_open()
        except BaseException:
            await self.close()
            raise

    async def on_open(self) -> None:
        """Hook run once the link is up: discover dialect details, drain error queues."""

    async def close(self) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            await transport.close()
