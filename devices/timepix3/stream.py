"""The Timepix3 data stream: frames read from the readout's data socket (TCP or UDP), decoded
in bulk."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from teststand.devices.timepix3.protocol import Decoded, Hits, PacketDecoder
from teststand.devices.timepix3.receivers import Receiver, receiver
from teststand.errors import TeststandError

BATCH = 1 << 19  # hits decoded before they go to the sink (the file) and the count map together


class DataStreamStopped(TeststandError):
    """The readout's data stream stopped or closed in the middle of a frame."""


@dataclass
class Frame:
    """What one frame (one shutter opening) delivered."""

    hits: int = 0
    reported: int = 0  # pixel packets the readout says it sent (its end-of-shutter packet)
    tot_sum: int = 0
    unknown: int = 0  # packets of unknown type
    lost_datagrams: int = 0  # UDP datagrams missing from the sequence
    triggers: list[int] = field(default_factory=list)
    count_map: npt.NDArray[np.uint32] = field(
        default_factory=lambda: np.zeros((256, 256), np.uint32)
    )

    @property
    def lost(self) -> int:
        return self.reported - self.hits

    def add(self, hits: Hits) -> None:
        self.hits += len(hits)
        self.tot_sum += int(hits.tot.sum(dtype=np.int64))
        hits.count_into(self.count_map)


class HitStream:
    """`await stream.open()`, then `frame = await stream.frame(sink)` once per shutter."""

    def __init__(self, address: str, *, name: str, stall_timeout: float) -> None:
        """`address`: the board's `DATA?` reply, `host:port` (TCP) or `udp://host:port`."""
        self.address, self.name = address, name
        self.stall_timeout = stall_timeout
        self.decoder = PacketDecoder()
        self._receiver: Receiver | None = None
        self._pending: list[Decoded] = []

    async def open(self) -> None:
        self.decoder.decode(b"")  # loads the compiled kernels now, not in the middle of a frame
        Hits.empty().count_map()
        self._receiver = receiver(self.address)
        await self._receiver.open()

    async def close(self) -> None:
        if self._receiver is not None:
            await self._receiver.close()
        self._receiver = None

    async def frame(self, sink: Callable[[Hits], None], frame: Frame | None = None) -> Frame:
        """Read up to the next end-of-shutter packet; the hits go to `sink` in batches."""
        frame = frame or Frame()
        batch: list[Hits] = []
        lost_before = self._receiver.lost_datagrams if self._receiver else 0
        try:
            while True:
                decoded = self._pending.pop(0) if self._pending else await self._next(frame)
                frame.unknown += decoded.unknown
                frame.triggers += decoded.tdc_triggers.tolist()
                if not decoded.frame_ends:
                    batch.append(decoded.hits)
                    if sum(map(len, batch)) >= BATCH:
                        self._deliver(batch, frame, sink)
                    continue
                cut, reported = decoded.frame_ends[0]
                batch.append(decoded.hits[:cut])
                frame.reported = reported
                later = [(h - cut, c) for h, c in decoded.frame_ends[1:]]
                none = decoded.tdc_triggers[:0]
                rest = Decoded(decoded.hits[cut:], none, none, later)
                if len(rest.hits) or rest.frame_ends:
                    self._pending.append(rest)
                return frame
        finally:  # what arrived goes to the file, even when the stream broke
            if self._receiver is not None:
                frame.lost_datagrams = self._receiver.lost_datagrams - lost_before
            self._deliver(batch, frame, sink)

    @staticmethod
    def _deliver(batch: list[Hits], frame: Frame, sink: Callable[[Hits], None]) -> None:
        if batch:
            hits = Hits.join(batch)
            batch.clear()
            frame.add(hits)
            sink(hits)

    async def _next(self, frame: Frame) -> Decoded:
        if self._receiver is None:
            raise DataStreamStopped(f"{self.name}: the data stream is not open; connect first")
        try:
            data = await asyncio.wait_for(self._receiver.read(), self.stall_timeout)
        except TimeoutError:
            raise self._stopped(frame, f"no data for {self.stall_timeout:g} s") from None
        except ConnectionError as exc:
            raise self._stopped(frame, f"the connection broke ({exc})") from None
        if not data:
            raise self._stopped(frame, "the readout closed the connection")
        return self.decoder.decode(data)

    def _stopped(self, frame: Frame, why: str) -> DataStreamStopped:
        return DataStreamStopped(
            f"{self.name}: the Timepix3 data stream {self.address} stopped in the middle "
            f"of a frame: {why}, after {frame.hits} hits (they are in the file). Check the "
            "readout board's data link and its status, then start the acquisition again"
        )
