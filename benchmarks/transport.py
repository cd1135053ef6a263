"""Transport benchmark: round trips against bare loops, and a paced serial link against its limit.

Run: `.venv/bin/python benchmarks/transport.py [--paced-queries 1000]`. Every figure is measured in
this one run against the same simulator; the last stdout line is one JSON object. The simulators
run in their own process (`teststand sim serve`), as an instrument would, so that they do not
compete with the client for the interpreter lock.

- `pty_ratio`: the transport's round trips per second over a pty, divided by those of a bare
  blocking pyserial write/read_until loop on the same pty.
- `tcp_ratio`: the same over TCP against a bare blocking socket loop.
- `paced_ratio`: 1,000 CAEN queries through the transport with the simulator pacing its replies as
  a 9600-baud 8N1 line (10 bits per byte, both directions), divided by the wire-time limit of those
  bytes. Goal: <= 1.10.
- `soak_*`: `teststand.app.link_soak` (the link soak test's run): 10,000 CAEN commands with every
  reply fault class mixed; the fraction of faulty replies, the reads that succeeded after retries
  (goal >= 0.97), wrong values accepted (goal 0). `lenient_wrong_values`: the same soak checking
  only the lenient reply shapes (`strict_formats=0`), for contrast.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import serial

from teststand.app.link_soak import link_soak
from teststand.devices.caen.protocol import parse_numbers
from teststand.transport import connect

TESTSTAND = str(Path(sys.executable).with_name("teststand"))

COMMAND = "$CMD:MON,CH:0,PAR:VMON"
BITS_PER_BYTE = 10


@contextmanager
def served(*options: str) -> Iterator[str]:
    """Serve a CAEN DT8033 simulator in a separate process; yield its address."""
    server = subprocess.Popen(
        [TESTSTAND, "sim", "serve", "caen-dt8033", *options],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        yield server.stdout.readline().strip()
    finally:
        server.terminate()
        server.wait(10)


def bare_serial(path: str, count: int) -> float:
    """Round trips per second of a plain blocking pyserial loop."""
    port = serial.Serial(path, baudrate=9600, timeout=2)
    line = (COMMAND + "\r\n").encode()
    started = time.perf_counter()
    for _ in range(count):
        port.write(line)
        if not port.read_until(b"\n").endswith(b"\n"):
            raise RuntimeError("bare serial loop timed out")
    elapsed = time.perf_counter() - started
    port.close()
    return count / elapsed


def bare_socket(address: str, count: int) -> float:
    host, port = address.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    stream = sock.makefile("rwb")
    line = (COMMAND + "\r\n").encode()
    started = time.perf_counter()
    for _ in range(count):
        stream.write(line)
        stream.flush()
        stream.readline()
    elapsed = time.perf_counter() - started
    sock.close()
    return count / elapsed


async def through_transport(url: str, count: int) -> tuple[float, int]:
    """Round trips per second through the transport, and the bytes that went over the wire."""
    async with connect(url, name="bench", terminator="CRLF", timeout=2) as link:
        wire = 0
        started = time.perf_counter()
        for _ in range(count):
            reply = await link.query(COMMAND, idempotent=True)
            parse_numbers(reply)
            wire += len(COMMAND) + 2 + len(reply) + 2
        elapsed = time.perf_counter() - started
    return count / elapsed, wire


def side_by_side(count: int, rounds: int) -> dict[str, float]:
    figures: dict[str, list[float]] = {k: [] for k in ("pty_t", "pty_b", "tcp_t", "tcp_b")}
    with served("--pty") as pty_path, served("--tcp", "127.0.0.1:0") as tcp_address:
        for _ in range(rounds):  # alternate, so that machine noise hits both sides alike
            figures["pty_b"].append(bare_serial(pty_path, count))
            figures["pty_t"].append(
                asyncio.run(through_transport(f"serial://{pty_path}", count))[0]
            )
            figures["tcp_b"].append(bare_socket(tcp_address, count))
            figures["tcp_t"].append(
                asyncio.run(through_transport(f"tcp://{tcp_address}", count))[0]
            )
    m = {k: statistics.median(v) for k, v in figures.items()}
    return {
        "pty_transport_per_s": round(m["pty_t"]),
        "pty_bare_pyserial_per_s": round(m["pty_b"]),
        "pty_ratio": round(m["pty_t"] / m["pty_b"], 3),
        "tcp_transport_per_s": round(m["tcp_t"]),
        "tcp_bare_socket_per_s": round(m["tcp_b"]),
        "tcp_ratio": round(m["tcp_t"] / m["tcp_b"], 3),
    }


def paced(count: int, baud: int) -> dict[str, float]:
    with served("--pty", "--baud", str(baud)) as path:
        started = time.perf_counter()
        _, wire_bytes = asyncio.run(through_transport(f"serial://{path}", count))
        elapsed = time.perf_counter() - started
    limit = wire_bytes * BITS_PER_BYTE / baud
    return {
        "paced_queries": count,
        "paced_baud": baud,
        "paced_seconds": round(elapsed, 2),
        "wire_limit_seconds": round(limit, 2),
        "paced_ratio": round(elapsed / limit, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="round trips per side and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--paced-queries", type=int, default=1000)
    parser.add_argument("--baud", type=int, default=9600)
    parser.add_argument("--soak-commands", type=int, default=10_000)
    args = parser.parse_args()
    results = side_by_side(args.count, args.rounds)
    for key, value in results.items():
        print(f"{key:>28}: {value}")
    pacing = paced(args.paced_queries, args.baud)
    for key, value in pacing.items():
        print(f"{key:>28}: {value}")
    soaked = asyncio.run(link_soak(args.soak_commands)).figures()
    lenient = asyncio.run(link_soak(args.soak_commands, strict=False)).figures()
    soaked["lenient_wrong_values"] = lenient["soak_wrong_values"]
    for key, value in soaked.items():
        print(f"{key:>28}: {value}")
    print(json.dumps(results | pacing | soaked))


if __name__ == "__main__":
    main()
