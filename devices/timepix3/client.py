"""Async client of a Timepix3 readout board's control socket (line protocol, sim/README.md)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from teststand.devices._client import ProtocolClient
from teststand.errors import ReplyFormatError, ReplyRefused, TeststandError

#: The chip's DACs and their ranges (Timepix3 manual); checked here before anything is sent.
DAC_RANGES: Mapping[str, range] = {
    name: range(0, top + 1)
    for name, top in {
        "Ibias_Preamp_ON": 255, "Ibias_Preamp_OFF": 15, "VPreamp_NCAS": 255, "Ibias_Ikrum": 255,
        "Vfbk": 255, "Vthreshold_fine": 511, "Vthreshold_coarse": 15, "Ibias_DiscS1_ON": 255,
        "Ibias_DiscS1_OFF": 15, "Ibias_DiscS2_ON": 255, "Ibias_DiscS2_OFF": 15,
        "Ibias_PixelDAC": 255, "Ibias_TPbufferIn": 255, "Ibias_TPbufferOut": 255,
        "VTP_coarse": 255, "VTP_fine": 511, "Ibias_CP_PLL": 255, "PLL_Vcntrl": 255,
    }.items()
}  # fmt: skip
SHAPE = (256, 256)
MODES = ("TOATOT", "TOA", "COUNT")


class Timepix3Error(TeststandError, ValueError):
    """A request the Timepix3 cannot take (a DAC out of range, a trim matrix of the wrong shape)."""


def check_dac(name: str, value: int) -> None:
    if name not in DAC_RANGES:
        raise Timepix3Error(f"unknown Timepix3 DAC {name!r}; DACs: {', '.join(DAC_RANGES)}")
    allowed = DAC_RANGES[name]
    if int(value) != value or value not in allowed:
        raise Timepix3Error(
            f"Timepix3 DAC {name} = {value} is out of range: it takes integers "
            f"{allowed.start}..{allowed.stop - 1}"
        )


def check_trims(trims: npt.ArrayLike) -> npt.NDArray[np.uint8]:
    """A trim matrix as 256 x 256 integers 0..15 ([y, x]); anything else is refused."""
    matrix = np.asarray(trims)
    if matrix.shape != SHAPE:
        raise Timepix3Error(
            f"a Timepix3 trim matrix must be 256 x 256 (rows y, columns x), got shape "
            f"{matrix.shape}; load the trim file made by trim_equalisation for this chip"
        )
    if not np.issubdtype(matrix.dtype, np.integer) or matrix.min() < 0 or matrix.max() > 15:
        raise Timepix3Error("Timepix3 trims are integers 0..15 (4 bits per pixel)")
    return matrix.astype(np.uint8)


def _reply(text: str) -> str:
    if text.startswith("ERR"):
        raise ReplyRefused(text[4:] or "ERR")
    if not text:
        raise ReplyFormatError("empty reply")
    return text


def _ok(text: str) -> str:
    if _reply(text) != "OK":
        raise ReplyFormatError(f"expected OK, got {text!r}")
    return text


class Timepix3Client(ProtocolClient):
    """`await tpx.set_dac("Vthreshold_fine", 120)`, `await tpx.start()`, `await tpx.status()`."""

    def __init__(self, url: str, *, name: str = "timepix3") -> None:
        super().__init__(url, name=name, write_terminator="LF", read_terminator="LF")

    async def query(self, command: str) -> str:
        return await self.transport.query(command, _reply, idempotent=True)

    async def command(self, command: str) -> None:
        await self.transport.query(command, _ok, idempotent=True)

    async def identity(self) -> str:
        return await self.query("*IDN?")

    async def data_address(self) -> str:
        """Where the data stream comes from: `host:port` (TCP) or `udp://host:port`."""
        return await self.query("DATA?")

    async def dac(self, name: str) -> int:
        check_dac(name, 0)
        return int(await self.query(f"DAC? {name}"))

    async def set_dac(self, name: str, value: int) -> None:
        check_dac(name, value)
        await self.command(f"DAC {name} {int(value)}")

    async def mode(self) -> str:
        return await self.query("MODE?")

    async def set_mode(self, mode: str) -> None:
        if mode.upper() not in MODES:
            raise Timepix3Error(f"Timepix3 mode {mode!r} unknown; modes: {', '.join(MODES)}")
        await self.command(f"MODE {mode.upper()}")

    async def shutter(self) -> float:
        return float(await self.query("SHUTTER?"))

    async def set_shutter(self, seconds: float) -> None:
        if not 1e-6 <= seconds <= 3600:
            raise Timepix3Error(f"shutter time {seconds} s is outside 1 µs .. 3600 s")
        await self.command(f"SHUTTER {seconds:.6f}")

    async def load_trims(self, trims: npt.ArrayLike) -> None:
        matrix = check_trims(trims)
        await self.command("TRIMS " + "".join("0123456789ABCDEF"[v] for v in matrix.ravel()))

    async def trims(self) -> npt.NDArray[np.uint8]:
        text = (await self.query("TRIMS?")).upper()
        codes = np.frombuffer(text.encode("ascii"), np.uint8)
        values = np.where(codes >= ord("A"), codes - (ord("A") - 10), codes - ord("0"))
        if codes.size != SHAPE[0] * SHAPE[1] or values.max(initial=0) > 15:
            raise Timepix3Error(f"TRIMS? replied {codes.size} characters, not 65536 hex digits")
        return values.astype(np.uint8).reshape(SHAPE)

    async def test_pulses(self) -> int:
        return int(await self.query("TPULSES?"))

    async def set_test_pulses(self, pulses: int) -> None:
        """Test pulses injected per frame into the pixels of the test-pulse region."""
        if not 0 <= pulses <= 10000:
            raise Timepix3Error(f"{pulses} test pulses per frame: take 0..10000")
        await self.command(f"TPULSES {int(pulses)}")

    async def test_pulse_region(self) -> str:
        return await self.query("TPMASK?")

    async def set_test_pulse_region(self, region: str) -> None:
        """`"x0 y0 x1 y1"` (end exclusive) or `"OFF"`."""
        words = region.split()
        if region.strip().upper() != "OFF" and (
            len(words) != 4 or not all(w.isdigit() for w in words)
            or not (0 <= int(words[0]) < int(words[2]) <= 256)
            or not (0 <= int(words[1]) < int(words[3]) <= 256)
        ):  # fmt: skip
            raise Timepix3Error(
                f"test-pulse region {region!r}: give 'x0 y0 x1 y1' with 0 <= x0 < x1 <= 256 and "
                "0 <= y0 < y1 <= 256 (ends exclusive), or 'OFF'"
            )
        await self.command(f"TPMASK {region.strip()}")

    async def temperature(self) -> float:
        return float(await self.query("TEMP?"))

    async def status(self) -> str:
        return await self.query("STATUS?")

    async def start(self) -> None:
        await self.command("START")

    async def stop(self) -> None:
        await self.command("STOP")
