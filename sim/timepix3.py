"""A Timepix3 readout board (SPIDR/Katherine style): a line control protocol and a TCP data stream.

The control commands, replies and errors, and the data stream's packet layouts, are in
sim/README.md ("Timepix3 readout"). One frame per `START`: the shutter opens for the set time
(simulated), the hits of that frame are streamed as they happen (a global-time packet before each
chunk), and the frame ends with an end-of-shutter packet holding the number of pixel packets sent.

Options `data=udp` (numbered datagrams, optional `loss`: `timepix3_udp.py`) and `bulk`
(precomputed flat-field blocks, up to the chip's 80 Mhits/s); hooks `stall()` (the stream stops
mid-frame), `set_bias(V)` or `bias_source` (the sensor bias, from the stand's HV channel).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections.abc import Callable
from typing import Any, ClassVar

from teststand.sim import timepix3_packets as packets
from teststand.sim.clock import SimClock
from teststand.sim.instrument import SimInstrument
from teststand.sim.lineproto import Refusal, parse_decimal, parse_integer
from teststand.sim.timepix3_matrix import PIXELS, PixelMatrix, Source
from teststand.sim.timepix3_udp import UdpData

#: The chip's DACs and their ranges (Timepix3 manual, DAC table).
DACS: dict[str, int] = {
    "Ibias_Preamp_ON": 255, "Ibias_Preamp_OFF": 15, "VPreamp_NCAS": 255, "Ibias_Ikrum": 255,
    "Vfbk": 255, "Vthreshold_fine": 511, "Vthreshold_coarse": 15, "Ibias_DiscS1_ON": 255,
    "Ibias_DiscS1_OFF": 15, "Ibias_DiscS2_ON": 255, "Ibias_DiscS2_OFF": 15, "Ibias_PixelDAC": 255,
    "Ibias_TPbufferIn": 255, "Ibias_TPbufferOut": 255, "VTP_coarse": 255, "VTP_fine": 511,
    "Ibias_CP_PLL": 255, "PLL_Vcntrl": 255,
}  # fmt: skip
MODES = {
    "TOATOT": packets.PIXEL_TOA_TOT,
    "TOA": packets.PIXEL_TOA_TOT,
    "COUNT": packets.PIXEL_COUNT,
}
CHUNK_PERIOD = 0.005  # s of real time between chunks of a frame
BLOCK = 65536  # pixel packets in one precomputed bulk block
BULK_CAP = 16  # blocks per chunk at most: a slow reader slows the stream instead of filling memory
IDN = "ASI,TPX3-SIM,W0005_E02,1.2"


class Timepix3(SimInstrument):
    """One Timepix3 chip on a readout board."""

    kind = "timepix3"
    options_help: ClassVar[dict[str, str]] = {
        "seed": "seed of the pixel matrix and the hits (default 1)",
        "dispersion": "e-, sigma of the untrimmed per-pixel threshold offsets (default 80)",
        "noise": "e-, mean per-pixel noise (default 80)",
        "dead": "number of dead pixels (default 0)",
        "noisy": "number of noisy pixels, 2 kHz each (default 0)",
        "depletion_voltage": "V, full depletion of the sensor (default 60)",
        "bias": "V, the sensor bias when no HV channel is coupled (default 150)",
        "source": "none, flat (X-ray tube) or beta: the irradiation at start (default none)",
        "rate": "hits/s of a flat source, clusters/s of a beta source (default 0)",
        "bulk": "true: a flat source streams precomputed packet blocks (benchmarks, up to 80 MHz)",
        "data_host": "address the data stream listens on (default 127.0.0.1)",
        "data_port": "port of the data stream (default 0: a free one)",
        "data": "tcp or udp: the data stream's transport (default tcp)",
        "loss": "udp: probability that a datagram with hits is dropped (default 0)",
    }

    def __init__(
        self,
        clock: SimClock | None = None,
        *,
        seed: int = 1,
        dispersion: float = 80.0,
        noise: float = 80.0,
        dead: int = 0,
        noisy: int = 0,
        depletion_voltage: float = 60.0,
        bias: float = 150.0,
        source: str = "none",
        rate: float = 0.0,
        bulk: bool = False,
        data_host: str = "127.0.0.1",
        data_port: int = 0,
        data: str = "tcp",
        loss: float = 0.0,
    ) -> None:
        super().__init__(clock)
        self.rng = random.Random(seed)
        self.matrix = PixelMatrix(
            self.rng, dispersion=dispersion, noise=noise, dead=dead, noisy=noisy,
            depletion_voltage=depletion_voltage,
        )  # fmt: skip
        self.bias = bias
        self.matrix.source = Source(source, float(rate))
        self.bias_source: Callable[[], float] | None = None
        self.matrix.bias = lambda: self.bias if self.bias_source is None else self.bias_source()
        self.bulk = bulk
        self.dacs = {name: 0 for name in DACS} | {"Vthreshold_fine": 100, "VTP_fine": 200}
        self.mode = "TOATOT"
        self.shutter = 0.1  # s
        self.frames, self.acquiring, self.stalled = 0, False, False
        self.sent = 0  # pixel packets of the present frame
        self._frame_start = self._produced_to = 0.0
        self._task: asyncio.Task[None] | None = None
        self._clients: set[asyncio.StreamWriter] = set()
        self._server: asyncio.AbstractServer | None = None
        self._listening: asyncio.Task[None] | None = None
        if data not in ("tcp", "udp"):
            raise ValueError(f"data={data!r}: the data stream is tcp or udp")
        udp = data == "udp"
        self.udp = UdpData(data_host, data_port, loss=loss, seed=seed) if udp else None
        self._listener = None if udp else socket.create_server((data_host, data_port))
        where = self.udp.address if self.udp else self._listener.getsockname()  # type: ignore[union-attr]
        self.data_address = where if isinstance(where, str) else "{}:{}".format(*where[:2])
        self._block = b""

    # -- control --------------------------------------------------------------------------------
    def respond(self, line: str) -> str | None:
        self._serve_data()
        words = line.split()
        if not words:
            return "ERR empty command"
        try:
            return self._command(words[0].upper(), words[1:])
        except Refusal as refusal:
            return refusal.reply

    def _command(self, verb: str, args: list[str]) -> str:
        queries: dict[str, Callable[[], str]] = {
            "*IDN?": lambda: IDN,
            "DATA?": lambda: self.data_address,
            "MODE?": lambda: self.mode,
            "SHUTTER?": lambda: f"{self.shutter:.6g}",
            "TPULSES?": lambda: str(self.matrix.tp_pulses),
            "TPMASK?": lambda: " ".join(map(str, self.matrix.tp_region or ())) or "OFF",
            "SOURCE?": lambda: f"{self.matrix.source.kind.upper()} {self.matrix.source.rate:g}",
            "TEMP?": lambda: f"{41.5 + (3.0 if self.acquiring else 0.0):.1f}",
            "BIAS?": lambda: f"{self.matrix.bias():.2f}",
            "STATUS?": self._status,
            "TRIMS?": lambda: self.matrix.trims.hex()[1::2].upper(),
        }
        if verb in queries:
            _arity(args, 0)
            return queries[verb]()
        if verb == "DAC?":
            _arity(args, 1)
            return str(self.dacs[_dac_name(args[0])])
        if verb == "START":
            _arity(args, 0)
            self._start()
            return "OK"
        if verb == "STOP":
            _arity(args, 0)
            self._finish()
            return "OK"
        if self.acquiring:
            raise Refusal("ERR busy: stop the acquisition first")
        setters: dict[str, Callable[[list[str]], None]] = {
            "DAC": self._set_dac,
            "MODE": self._set_mode,
            "SHUTTER": self._set_shutter,
            "TRIMS": self._set_trims,
            "TPMASK": self._set_tp_mask,
            "TPULSES": self._set_pulses,
            "SOURCE": self._set_source,
        }
        if verb not in setters:
            raise Refusal(f"ERR unknown command: {verb}")
        setters[verb](args)
        return "OK"

    def _status(self) -> str:
        state = "STALLED" if self.stalled else "ACQUIRING" if self.acquiring else "IDLE"
        return f"{state} frames={self.frames} sent={self.sent}"

    def _set_dac(self, args: list[str]) -> None:
        _arity(args, 2)
        name = _dac_name(args[0])
        value = parse_integer(args[1])
        if value is None:
            raise Refusal(f"ERR bad value: {args[1]}")
        if not 0 <= value <= DACS[name]:
            raise Refusal(f"ERR out of range: {name} 0..{DACS[name]}")
        self.dacs[name] = value
        self.matrix.threshold_dac = self.dacs["Vthreshold_fine"]
        self.matrix.tp_charge_dac = self.dacs["VTP_fine"]

    def _set_mode(self, args: list[str]) -> None:
        _arity(args, 1)
        if args[0].upper() not in MODES:
            raise Refusal(f"ERR bad value: {args[0]} (modes: {', '.join(MODES)})")
        self.mode = args[0].upper()

    def _set_shutter(self, args: list[str]) -> None:
        _arity(args, 1)
        value = parse_decimal(args[0])
        if value is None or not 1e-6 <= value <= 3600:
            raise Refusal("ERR out of range: SHUTTER 0.000001..3600")
        self.shutter = value

    def _set_trims(self, args: list[str]) -> None:
        _arity(args, 1)
        text = args[0]
        if len(text) != PIXELS:
            raise Refusal(f"ERR trims need {PIXELS} hex digits, got {len(text)}")
        try:
            self.matrix.trims = bytearray(int(digit, 16) for digit in text)
        except ValueError:
            raise Refusal("ERR bad value: trims must be hex digits 0..F") from None

    def _set_tp_mask(self, args: list[str]) -> None:
        if [a.upper() for a in args] == ["OFF"]:
            self.matrix.tp_region = None
            return
        _arity(args, 4)
        values = [parse_integer(a) for a in args]
        if any(v is None for v in values):
            raise Refusal("ERR bad value: TPMASK x0 y0 x1 y1 (integers) or TPMASK OFF")
        x0, y0, x1, y1 = (int(v or 0) for v in values)
        if not (0 <= x0 < x1 <= 256 and 0 <= y0 < y1 <= 256):
            raise Refusal("ERR out of range: TPMASK needs 0 <= x0 < x1 <= 256, 0 <= y0 < y1 <= 256")
        self.matrix.tp_region = (x0, y0, x1, y1)

    def _set_pulses(self, args: list[str]) -> None:
        _arity(args, 1)
        value = parse_integer(args[0])
        if value is None or not 0 <= value <= 10000:
            raise Refusal("ERR out of range: TPULSES 0..10000")
        self.matrix.tp_pulses = value

    def _set_source(self, args: list[str]) -> None:
        if not 1 <= len(args) <= 2 or args[0].upper() not in ("NONE", "FLAT", "BETA"):
            raise Refusal("ERR bad value: SOURCE NONE|FLAT|BETA [rate/s]")
        rate = parse_decimal(args[1]) if len(args) == 2 else 0.0
        if rate is None or not 0 <= rate <= 80e6:
            raise Refusal("ERR out of range: source rate 0..80000000 /s")
        self.matrix.source = Source(args[0].lower(), rate)
        self._block = b""

    # -- test and console hooks -----------------------------------------------------------------
    def set_bias(self, volts: float) -> None:
        self.bias = float(volts)

    def stall(self) -> None:
        """The data stream stops mid-frame (no more packets, no end-of-shutter) until reset."""
        self.stalled = True

    def unstall(self) -> None:
        self.stalled = False

    def inject(self, word: int) -> None:
        """Send one raw 64-bit word on the data stream now (a foreign or corrupt packet)."""
        self._send(packets.pack([word]), droppable=False)

    def snapshot(self) -> dict[str, Any]:
        return {
            "status": self._status(),
            "mode": self.mode,
            "shutter": self.shutter,
            "dacs": dict(self.dacs),
            "source": [self.matrix.source.kind, self.matrix.source.rate],
            "bias": self.matrix.bias(),
            "data": self.data_address,
            "dropped": [self.udp.dropped_datagrams, self.udp.dropped_hits] if self.udp else None,
        }

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for writer in list(self._clients):
            writer.close()
        if self._server is not None:
            self._server.close()
        if self._listening is not None:
            self._listening.cancel()
        (self.udp or self._listener).close()  # type: ignore[union-attr]

    # -- the data stream ------------------------------------------------------------------------
    def _serve_data(self) -> None:
        sock = self.udp.sock if self.udp else self._listener
        if self._listening is None and sock is not None and sock.fileno() >= 0:
            serving = self.udp.serve() if self.udp else self._listen()
            self._listening = asyncio.get_running_loop().create_task(serving)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, sock=self._listener)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients.add(writer)
        with contextlib.suppress(ConnectionError):
            await reader.read()  # the client never sends; this returns when it hangs up
        self._clients.discard(writer)
        writer.close()

    def _start(self) -> None:
        if self.acquiring:
            raise Refusal("ERR busy: an acquisition is running")
        self.acquiring = True
        self.sent = 0
        self._frame_start = self._produced_to = self.clock.now()
        t_ns = self._frame_start * 1e9
        first = [packets.global_time_packet(t_ns), packets.tdc_packet(self.frames, t_ns)]
        self._send(packets.pack(first), droppable=False)
        self._task = asyncio.get_running_loop().create_task(self._stream())

    def _finish(self, end: float | None = None) -> None:
        """Close the shutter at `end` (now by default): the last hits, then end-of-shutter."""
        if not self.acquiring:
            return
        if not self.stalled:  # a stalled link delivers nothing more
            self._emit(
                min(self.clock.now(), self._frame_start + self.shutter) if end is None else end
            )
            self._send(packets.pack([packets.end_of_shutter_packet(self.sent)]), droppable=False)
        self.acquiring = False
        self.frames += 1
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()

    async def _stream(self) -> None:
        while self.acquiring:
            with self.lock:
                end = self._frame_start + self.shutter
                if not self.stalled:
                    complete = self._emit(min(self.clock.now(), end), cap=True)
                    if complete and self.clock.now() >= end:
                        self._finish(end)
                        return
            await asyncio.gather(*(w.drain() for w in list(self._clients)), return_exceptions=True)
            await asyncio.sleep(CHUNK_PERIOD)

    def _emit(self, until: float, cap: bool = False) -> bool:
        """Send the hits of [produced_to, until); False when bulk blocks are left for later."""
        start, self._produced_to = self._produced_to, max(self._produced_to, until)
        if self.bulk and self.matrix.source.kind == "flat":
            return self._emit_bulk(start, self._produced_to, BULK_CAP if cap else None)
        if self._produced_to <= start:
            return True
        header = MODES[self.mode]
        hits = self.matrix.hits(start, self._produced_to, self._frame_start, self.shutter)
        words = [packets.global_time_packet(start * 1e9)]
        for t, x, y, tot in hits:
            words.append(packets.pixel_packet(x, y, t * 1e9, 0 if self.mode == "TOA" else tot,
                                              header=header))  # fmt: skip
        self.sent += len(hits)
        self._send(packets.pack(words))
        return True

    def _emit_bulk(self, start: float, end: float, cap: int | None) -> bool:
        """Whole precomputed blocks (the last one cut) up to the hits due by `end`."""
        rate = self.matrix.source.rate
        if not self._block:
            self._block = self._make_block(rate)
        due = round((end - self._frame_start) * rate) - self.sent
        blocks = 0
        while due > 0:
            if cap is not None and blocks >= cap:
                return False
            blocks += 1
            count = min(due, BLOCK)
            stamp = packets.pack([packets.global_time_packet(start * 1e9 + self.sent / rate * 1e9)])
            self._send(stamp + self._block[: count * 8])
            self.sent += count
            due -= count
        return True

    def _make_block(self, rate: float) -> bytes:
        words = []
        for index in range(BLOCK):
            pixel = self.rng.randrange(PIXELS)
            words.append(packets.pixel_packet(pixel % 256, pixel // 256, index / rate * 1e9, 44))
        return packets.pack(words)

    def _send(self, data: bytes, *, droppable: bool = True) -> None:
        """To the data stream's TCP clients, or its UDP subscriber (`droppable`: may be lost)."""
        if self.udp is not None:
            self.udp.send(data, droppable=droppable)
            return
        for writer in list(self._clients):
            if writer.is_closing():
                self._clients.discard(writer)
            else:
                writer.write(data)


def _arity(args: list[str], count: int) -> None:
    if len(args) != count:
        raise Refusal("ERR missing parameter" if len(args) < count else "ERR too many arguments")


def _dac_name(text: str) -> str:
    for name in DACS:
        if name.lower() == text.lower():
            return name
    raise Refusal(f"ERR unknown DAC: {text}")
