"""The Timepix3 readout's UDP data stream: numbered datagrams to one receiver, optional loss.

A receiver subscribes by sending any datagram to the board's data port; from then on the board
sends every chunk of its stream to that address as datagrams of at most `WORDS` 64-bit words,
each behind an 8-byte little-endian sequence number (0, 1, 2, ... since the subscription), so
the receiver finds lost datagrams as gaps. With `loss` > 0 each datagram that carries hits is
dropped with that probability (seeded); a frame's first (global time, TDC) and last
(end-of-shutter) datagrams always go out, as the readout's trailer is re-sent until acknowledged.
Dropped datagrams still use up their sequence numbers. Standard library only.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
from typing import cast

WORDS = 1024  # 64-bit words per datagram at most (8 KiB + the sequence number)
PIXEL_NIBBLES = (0xA, 0xB)


class UdpData(asyncio.DatagramProtocol):
    """The board's end: `send(data)` splits `data` into numbered datagrams to the subscriber."""

    def __init__(self, host: str, port: int, *, loss: float, seed: int) -> None:
        if not 0.0 <= loss < 1.0:
            raise ValueError(f"loss={loss}: give a probability 0 <= loss < 1")
        self.loss = loss
        self.rng = random.Random(seed + 1)  # not the hits' generator: the same hits as on TCP
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
        self.address = "udp://{}:{}".format(*self.sock.getsockname()[:2])
        self.peer: tuple[str, int] | None = None
        self.sequence = 0
        self.dropped_datagrams = 0
        self.dropped_hits = 0  # pixel packets in the dropped datagrams
        self._transport: asyncio.DatagramTransport | None = None

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, sock=self.sock)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.peer, self.sequence = addr, 0  # a (new) subscriber: numbering starts again

    def send(self, data: bytes, *, droppable: bool = True) -> None:
        if self._transport is None or self.peer is None:
            return  # nobody listens: the board's packets go nowhere
        for start in range(0, len(data), WORDS * 8):
            chunk = data[start : start + WORDS * 8]
            header = struct.pack("<Q", self.sequence)
            self.sequence += 1
            if droppable and self.loss and self.rng.random() < self.loss:
                self.dropped_datagrams += 1
                self.dropped_hits += _pixel_packets(chunk)
                continue
            self._transport.sendto(header + chunk, self.peer)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self.sock.close()


def _pixel_packets(chunk: bytes) -> int:
    words = memoryview(chunk).cast("Q")
    return sum(1 for word in words if word >> 60 in PIXEL_NIBBLES)
