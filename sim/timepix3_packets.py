"""Timepix3 data packets as a SPIDR/Katherine-style readout sends them: 64-bit little-endian words.

The layouts (bit 63 first) are in sim/README.md, "Timepix3 data stream". Standard library only:
packets are built with integer arithmetic and packed in bulk with `array('Q')`.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterable

PIXEL_TOA_TOT = 0xB  # pixel packet, ToA + ToT mode (and ToA-only: ToT 0)
PIXEL_COUNT = 0xA  # pixel packet, event-count mode (integral ToT / count in the ToT field)
GLOBAL_TIME = 0x44  # header byte: 48-bit global time, 25 ns units, in bits 47..0
TDC1_RISE = 0x6F  # header byte of a TDC1 rising-edge (trigger) packet
END_OF_SHUTTER = 0x71B0  # header (16 bits): bits 47..0 hold the pixel packets of the frame

COARSE_NS = 25.0
FINE_NS = 1.5625
TDC_NS = 3.125
COLUMNS = ROWS = 256


def pixel_address(x: int, y: int) -> int:
    """The 16-bit pixel address: double column (7 bits), super pixel (6), pixel (3)."""
    return ((x >> 1) << 9) | ((y >> 2) << 3) | ((x & 1) << 2) | (y & 3)


def pixel_packet(x: int, y: int, time_ns: float, tot: int, *, header: int = PIXEL_TOA_TOT) -> int:
    """A pixel packet for a hit at `time_ns` (since the readout's time zero) with ToT in 25 ns.

    The 30-bit coarse time (14 bits ToA + 16 bits SPIDR time) counts 25 ns; the 4-bit fine ToA
    counts 1.5625 ns back from the coarse edge (ToA = coarse * 25 ns - fine * 1.5625 ns).
    """
    ticks = int(time_ns / FINE_NS)  # 1.5625 ns ticks
    coarse = -(-ticks // 16)  # the next 25 ns edge
    fine = coarse * 16 - ticks
    coarse &= 0x3FFFFFFF
    return (
        (header << 60)
        | (pixel_address(x, y) << 44)
        | ((coarse & 0x3FFF) << 30)
        | ((min(tot, 0x3FF) & 0x3FF) << 20)
        | (fine << 16)
        | (coarse >> 14)
    )


def global_time_packet(time_ns: float) -> int:
    return (GLOBAL_TIME << 56) | (int(time_ns / COARSE_NS) & 0xFFFFFFFFFFFF)


def tdc_packet(trigger: int, time_ns: float) -> int:
    """A TDC1 rising-edge packet: 12-bit trigger counter, 35-bit 3.125 ns stamp, fine 1..12."""
    stamp = int(time_ns / TDC_NS)
    return (TDC1_RISE << 56) | ((trigger & 0xFFF) << 44) | ((stamp & 0x7FFFFFFFF) << 9) | (1 << 5)


def end_of_shutter_packet(pixel_packets: int) -> int:
    return (END_OF_SHUTTER << 48) | (pixel_packets & 0xFFFFFFFFFFFF)


def pack(words: Iterable[int]) -> bytes:
    """Words as little-endian 64-bit bytes."""
    packed = array("Q", words)
    if sys.byteorder == "big":  # pragma: no cover - the stand's machines are little-endian
        packed.byteswap()
    return packed.tobytes()
