"""The two ways a Timepix3 readout's data stream arrives: a TCP connection, or UDP datagrams.

Both give `await receiver.read()` (the next bytes of the stream, valid until the next call;
`b""` once the readout closed it) and count `lost_datagrams`. The UDP receiver subscribes by
sending one datagram to the board's data port; each datagram then carries an 8-byte
little-endian sequence number before its words (sim/README.md), and a jump in the numbers
counts the datagrams lost on the way.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Protocol, cast

READ_SIZE = 1 << 22
UDP_BUFFER = 1 << 24  # bytes of the receive buffer asked of the kernel


class Receiver(Protocol):
    lost_datagrams: int

    async def open(self) -> None: ...
    async def read(self) -> memoryview | bytes: ...
    async def close(self) -> None: ...


class TcpReceiver(asyncio.BufferedProtocol):
    """The stream over one TCP connection to the board's data port (nothing lost in transit).

    The kernel copies straight into one buffer (`BufferedProtocol`); `read()` hands out the
    whole 64-bit words received so far as a view of it, valid until the next `read()` (the
    decoder copies what it keeps), so the bytes are never copied again on the way."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.lost_datagrams = 0
        self._buffer = memoryview(bytearray(READ_SIZE))
        self._filled = 0  # bytes received into the buffer
        self._handed = 0  # bytes handed out by the last read()
        self._arrived = asyncio.Event()
        self._closed = False
        self._error: Exception | None = None
        self._transport: asyncio.Transport | None = None

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_connection(lambda: self, self.host, self.port)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._buffer[self._filled :]

    def buffer_updated(self, nbytes: int) -> None:
        self._filled += nbytes
        if self._filled == len(self._buffer) and self._transport is not None:
            self._transport.pause_reading()  # full: the board waits (TCP) until read() frees it
        self._arrived.set()

    def eof_received(self) -> bool:
        self._closed = True
        self._arrived.set()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed, self._error = True, exc
        self._arrived.set()

    async def read(self) -> memoryview | bytes:
        self._release()
        while self._filled < 8:
            if self._closed:
                if self._error is not None:
                    raise ConnectionError(str(self._error))
                return b""
            self._arrived.clear()
            await self._arrived.wait()
        self._handed = self._filled - self._filled % 8
        return self._buffer[: self._handed]

    def _release(self) -> None:
        """What arrived after the words handed out last (a cut word, newer data) moves to the
        front of the buffer; reading goes on if a full buffer had paused it."""
        if not self._handed:
            return
        rest = self._filled - self._handed
        self._buffer[:rest] = self._buffer[self._handed : self._filled]
        self._filled, self._handed = rest, 0
        if self._transport is not None and not self._closed:
            self._transport.resume_reading()

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None


class UdpReceiver(asyncio.DatagramProtocol):
    """Numbered datagrams from the board; late or repeated ones (numbers already passed) are
    dropped and counted in `late`."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.lost_datagrams = 0
        self.late = 0
        self._expected = 0
        self._parts: list[bytes] = []
        self._arrived = asyncio.Event()
        self._error: Exception | None = None
        self._transport: asyncio.DatagramTransport | None = None

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: self, remote_addr=(self.host, self.port)
        )
        sock = transport.get_extra_info("socket")
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_BUFFER)
        transport.sendto(b"SUBSCRIBE")  # the board sends its stream to this socket from now on

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        sequence = int.from_bytes(data[:8], "little")
        if sequence < self._expected:
            self.late += 1
            return
        self.lost_datagrams += sequence - self._expected
        self._expected = sequence + 1
        self._parts.append(data[8:])
        self._arrived.set()

    def error_received(self, exc: Exception) -> None:
        self._error = exc
        self._arrived.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self._error = exc or ConnectionError("the UDP socket closed")
        self._arrived.set()

    async def read(self) -> bytes:
        while not self._parts:
            if self._error is not None:
                raise ConnectionError(str(self._error))
            self._arrived.clear()
            await self._arrived.wait()
        data, self._parts = b"".join(self._parts), []
        return data

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None


def receiver(address: str) -> Receiver:
    """`host:port` (TCP) or `udp://host:port`, as the board's `DATA?` replies."""
    scheme, _, where = address.rpartition("://")
    host, _, port = where.rpartition(":")
    if scheme == "udp":
        return UdpReceiver(host, int(port))
    return TcpReceiver(host, int(port))
