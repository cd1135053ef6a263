"""Timepix3 data packets (64-bit little-endian words, SPIDR layout) decoded by a compiled kernel.

Pixel packets (header nibble 0xB ToA+ToT, 0xA event count): address (double column, super pixel,
pixel) to x, y; 30-bit coarse time (14-bit ToA, 16-bit SPIDR time, 25 ns) extended with the last
global-time packet (0x44, 48 bits of 25 ns) and corrected by the 4-bit fine ToA (1.5625 ns);
ToT 10 bits (25 ns). TDC packets (0x6A/0x6B/0x6E/0x6F) give trigger numbers and times;
end-of-shutter packets (0x71B0) close a frame and carry the number of pixel packets sent in it.
Any other packet is counted as unknown, never decoded as a hit.

The kernel is one numba-compiled pass over the words (no Python per packet); numba caches it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from numba import njit

END_OF_SHUTTER = 0x71B0

U8 = npt.NDArray[np.uint8]
U16 = npt.NDArray[np.uint16]
I64 = npt.NDArray[np.int64]
Words = npt.NDArray[np.uint64]


@dataclass
class Hits:
    """A table of hits: column x, row y, time of arrival in ns, time over threshold in 25 ns."""

    x: U8
    y: U8
    toa: I64
    tot: U16

    def __len__(self) -> int:
        return int(self.x.size)

    def __getitem__(self, part: slice) -> Hits:
        return Hits(self.x[part], self.y[part], self.toa[part], self.tot[part])

    @classmethod
    def empty(cls) -> Hits:
        return cls(np.empty(0, np.uint8), np.empty(0, np.uint8), np.empty(0, np.int64),
                   np.empty(0, np.uint16))  # fmt: skip

    @classmethod
    def join(cls, parts: list[Hits]) -> Hits:
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return cls.empty()
        return cls(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in ("x", "y", "toa", "tot"))
        )

    def count_into(self, counts: npt.NDArray[np.uint32]) -> None:
        """Add these hits to a 256 x 256 count map ([y, x])."""
        _count(self.x, self.y, counts.reshape(-1))

    def count_map(self) -> npt.NDArray[np.uint32]:
        """Hits per pixel, indexed [y, x]."""
        counts = np.zeros((256, 256), np.uint32)
        self.count_into(counts)
        return counts


@dataclass
class Decoded:
    """One buffer's content. `frame_ends[i]` is (this buffer's hits before the i-th
    end-of-shutter packet, the pixel packets that packet says its frame had)."""

    hits: Hits
    tdc_triggers: I64
    tdc_times_ns: I64
    frame_ends: list[tuple[int, int]] = field(default_factory=list)
    unknown: int = 0


@njit(cache=True, nogil=True)
def _kernel(words, reference, x, y, toa, tot, end_hits, end_counts, tdc_trig, tdc_time):  # type: ignore[no-untyped-def]
    hits = 0
    ends = 0
    tdcs = 0
    unknown = 0
    wrap = np.int64(1 << 30)
    half = np.int64(1 << 29)
    for i in range(words.size):
        w = words[i]
        header = np.int64(w >> np.uint64(56))
        nibble = header >> 4
        if nibble == 0xB or nibble == 0xA:
            address = np.int64((w >> np.uint64(44)) & np.uint64(0xFFFF))
            x[hits] = ((address >> 8) & 0xFE) | ((address >> 2) & 1)
            y[hits] = ((address >> 1) & 0xFC) | (address & 3)
            coarse = np.int64((w >> np.uint64(30)) & np.uint64(0x3FFF))
            coarse |= np.int64(w & np.uint64(0xFFFF)) << 14
            coarse += reference - (reference & (wrap - 1))
            if coarse - reference > half:
                coarse -= wrap
            elif reference - coarse > half:
                coarse += wrap
            fine = np.int64((w >> np.uint64(16)) & np.uint64(0xF))
            toa[hits] = ((coarse * 16 - fine) * 25) >> 4
            tot[hits] = np.uint16((w >> np.uint64(20)) & np.uint64(0x3FF))
            hits += 1
        elif header == 0x44:
            reference = np.int64(w & np.uint64(0xFFFFFFFFFFFF))
        elif header == 0x6A or header == 0x6B or header == 0x6E or header == 0x6F:
            tdc_trig[tdcs] = np.int64((w >> np.uint64(44)) & np.uint64(0xFFF))
            tdc_time[tdcs] = np.int64((w >> np.uint64(9)) & np.uint64(0x7FFFFFFFF)) * 3125 // 1000
            tdcs += 1
        elif (w >> np.uint64(48)) == np.uint64(0x71B0):
            end_hits[ends] = hits
            end_counts[ends] = np.int64(w & np.uint64(0xFFFFFFFFFFFF))
            ends += 1
        else:
            unknown += 1
    return hits, ends, tdcs, unknown, reference


@njit(cache=True, nogil=True)
def _count(x, y, counts):  # type: ignore[no-untyped-def]
    for i in range(x.size):
        counts[np.int64(y[i]) * 256 + np.int64(x[i])] += 1


class PacketDecoder:
    """Decodes a byte stream buffer by buffer; keeps a cut word and the global time across them."""

    def __init__(self) -> None:
        self._rest = b""
        self._reference = 0  # last global time, 25 ns
        self.unknown = 0  # packets of unknown type seen so far

    def decode(self, data: bytes | memoryview) -> Decoded:
        if self._rest:
            data = self._rest + data
        usable = len(data) - len(data) % 8
        self._rest = bytes(data[usable:])
        return self.decode_words(np.frombuffer(data, dtype="<u8", count=usable // 8))

    def decode_words(self, words: Words) -> Decoded:
        n = words.size
        x, y = np.empty(n, np.uint8), np.empty(n, np.uint8)
        toa, tot = np.empty(n, np.int64), np.empty(n, np.uint16)
        end_hits, end_counts = np.empty(n, np.int64), np.empty(n, np.int64)
        tdc_trig, tdc_time = np.empty(n, np.int64), np.empty(n, np.int64)
        hits, ends, tdcs, unknown, self._reference = _kernel(
            words, np.int64(self._reference), x, y, toa, tot, end_hits, end_counts, tdc_trig,
            tdc_time,
        )  # fmt: skip
        self.unknown += unknown
        frame_ends = [
            (int(h), int(c)) for h, c in zip(end_hits[:ends], end_counts[:ends], strict=True)
        ]
        return Decoded(
            Hits(x[:hits], y[:hits], toa[:hits], tot[:hits]),
            tdc_trig[:tdcs],
            tdc_time[:tdcs],
            frame_ends,
            unknown,
        )
