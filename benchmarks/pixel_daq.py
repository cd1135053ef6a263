"""Pixel DAQ benchmark: Timepix3 packets decoded per second, and decode + HDF5 from the TCP stream.

Run: `.venv/bin/python benchmarks/pixel_daq.py [--packets 20000000] [--seconds 2] [--rate 4e7]
[--codecs blosc-lz4,lzf]`

In one run, against the physical limits:
- `decode`: packets decoded per second on one core (`PacketDecoder`, numba kernel) from a buffer
  of flat-field pixel packets; goal >= 80 Mhits/s, the Timepix3 chip's maximum.
- `stream`: the simulator (`teststand sim serve timepix3`, its own process, bulk blocks at
  `--rate`) streams one frame of `--seconds` over TCP; the `Timepix3` device decodes it and
  writes it to HDF5 (its writer thread) with each of `--codecs` in turn (the first is the
  device's default, the others the same run's comparison: lzf was the codec before Blosc/LZ4);
  rate = hits on disk / wall time of the frame; goal >= 40 Mhits/s (the USB 3 readouts' limit)
  with zero hits lost (count in = count on disk). Also per CPU second of the DAQ process (all
  its threads): what it sustains with a core of its own, on a machine shared with other work.
- `raw`: the same stream read and discarded, no decoding or writing: the baseline of this
  machine's loopback and simulator, measured in the same run.
The last stdout line is one JSON object with the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from teststand.devices.timepix3 import PacketDecoder, Timepix3
from teststand.devices.timepix3.client import Timepix3Client
from teststand.sim import timepix3_packets as packets

CHIP_LIMIT = 80e6  # hits/s, Timepix3
USB3_LIMIT = 40e6  # hits/s, the USB 3 readouts


def decode_rate(count: int) -> float:
    rng = np.random.default_rng(1)
    block = np.frombuffer(
        packets.pack(
            [
                packets.pixel_packet(int(p) % 256, int(p) // 256, i * 25.0, 44)
                for i, p in enumerate(rng.integers(0, 65536, 65536))
            ]
        ),
        "<u8",
    )
    words = np.concatenate(
        [[np.uint64(packets.global_time_packet(0))], np.tile(block, count // block.size)]
    )
    decoder = PacketDecoder()
    decoder.decode_words(words[:1000])  # load the compiled kernel
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        decoded = decoder.decode_words(words)
        best = min(best, time.perf_counter() - start)
    assert len(decoded.hits) == words.size - 1
    return (words.size - 1) / best


def serve(rate: float) -> tuple[subprocess.Popen[str], str]:
    options = ["-o", "bulk=true", "-o", "source=flat", "-o", f"rate={rate}"]
    command = [sys.executable, "-m", "teststand.app.cli", "sim", "serve", "timepix3"]
    command += ["--tcp", "127.0.0.1:0", *options]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


async def raw_rate(address: str, seconds: float) -> float:
    """Read one frame from the data socket and throw it away: the stream's own ceiling."""
    client = Timepix3Client(f"tcp://{address}", name="raw")
    await client.open()
    host, _, port = (await client.data_address()).rpartition(":")
    reader, writer = await asyncio.open_connection(host, port)
    await client.set_shutter(seconds)
    start = time.perf_counter()
    await client.start()
    received, tail = 0, b""
    while True:
        data = await reader.read(1 << 22)
        received += len(data)
        tail = (tail + data)[-8:]
        if len(tail) == 8 and int.from_bytes(tail, "little") >> 48 == packets.END_OF_SHUTTER:
            break
    elapsed = time.perf_counter() - start
    writer.close()
    await client.close()
    return received / 8 / elapsed


async def stream_rate(address: str, seconds: float, directory: Path, codec: str) -> dict[str, Any]:
    det = Timepix3(
        f"tcp://{address}", directory, name="tpx", stall_timeout=10.0, compression=codec or None
    )
    await det.connect()
    await det.stage()
    await det.prepare(_trigger_info(seconds))
    start, cpu = time.perf_counter(), time.process_time()
    await det.trigger()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    await det.unstage()
    status = await det.client.status()
    await det.close()
    (path,) = await asyncio.to_thread(lambda: list(directory.glob("*.h5")))
    with h5py.File(path, "r") as file:
        on_disk, counted = int(file["hits/x"].shape[0]), int(file["hit_count"][0])
        lost = int(file["lost"][0])
    sent = int(status.rpartition("sent=")[2])
    return {"sent": sent, "on_disk": on_disk, "counted": counted, "lost": lost,
            "seconds": elapsed, "rate": on_disk / elapsed, "cpu_seconds": cpu,
            "rate_per_cpu_s": on_disk / cpu}  # fmt: skip


def _trigger_info(seconds: float) -> Any:
    from ophyd_async.core import TriggerInfo

    return TriggerInfo(livetime=seconds, exposure_timeout=seconds * 20 + 30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=20_000_000)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rate", type=float, default=USB3_LIMIT)
    parser.add_argument("--codecs", default="blosc-lz4,lzf", help="comma-separated; '' for none")
    args = parser.parse_args()
    decode = decode_rate(args.packets)
    print(f"decode: {decode / 1e6:.1f} Mhits/s on one core", flush=True)
    process, address = serve(args.rate)
    try:
        raw = asyncio.run(raw_rate(address, args.seconds))
        print(f"raw stream: {raw / 1e6:.1f} Mpackets/s", flush=True)
        streams = {}
        for codec in args.codecs.split(","):
            with tempfile.TemporaryDirectory() as directory:
                streams[codec] = asyncio.run(
                    stream_rate(address, args.seconds, Path(directory), codec)
                )
            rate = streams[codec]["rate"] / 1e6
            print(
                f"decode + HDF5 ({codec or 'none'}): {rate:.1f} Mhits/s, {streams[codec]}",
                flush=True,
            )
    finally:
        process.terminate()
        process.wait(10)
    stream = next(iter(streams.values()))
    zero_lost = all(
        s["sent"] == s["on_disk"] == s["counted"] and s["lost"] == 0 for s in streams.values()
    )
    print(json.dumps({
        "decode_mhits_per_s": round(decode / 1e6, 2),
        "decode_vs_chip_limit": round(decode / CHIP_LIMIT, 3),
        "stream_mhits_per_s": round(stream["rate"] / 1e6, 2),
        "stream_vs_usb3_limit": round(stream["rate"] / USB3_LIMIT, 3),
        "stream_mhits_per_cpu_s": round(stream["rate_per_cpu_s"] / 1e6, 2),
        "stream_per_cpu_vs_usb3_limit": round(stream["rate_per_cpu_s"] / USB3_LIMIT, 3),
        "raw_stream_mpackets_per_s": round(raw / 1e6, 2),
        "stream_vs_raw": round(stream["rate"] / raw, 3),
        "codec": args.codecs.split(",")[0],
        "by_codec_mhits_per_s": {c: round(s["rate"] / 1e6, 2) for c, s in streams.items()},
        "asked_rate_mhits_per_s": args.rate / 1e6,
        "hits_sent": stream["sent"], "hits_on_disk": stream["on_disk"], "zero_lost": zero_lost,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
