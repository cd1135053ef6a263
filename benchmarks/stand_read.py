"""Full-stand read benchmark over serial links paced at 9600 baud.

Run: `.venv/bin/python benchmarks/stand_read.py [--reads 5]`. The simulated 8-slot stand of
profile_collection/stand.yaml is served with every link paced as a 9600-baud 8N1 line; one full
read covers all HV voltages, currents and status words, every LV voltage and current, the chiller
and the coldbox. Measured side by side in this run:

- `full_reads_per_s`: full-stand reads per second (goal >= 1);
- `wire_efficiency`: the wire-time limit of the bytes exchanged divided by the time taken (links
  run in parallel, so the limit is that of the busiest link; goal >= 0.9);
- `group_vs_naive`: the time of reading the HV supply channel by channel (`CH:n`, 24 queries)
  divided by that of the group reads (`CH:8`, 3 queries).

The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

from bluesky.protocols import Readable
from ophyd_async.core import Device

from teststand.config import load_stand
from teststand.devices.caen import CaenHV
from teststand.stand import TestStand, open_stand

STAND_FILE = Path(__file__).resolve().parents[1] / "profile_collection" / "stand.yaml"
BITS_PER_BYTE = 10
FULL_READ = ("hv", "lv1", "lv2", "chiller", "coldbox")


def paced_config(baud: int) -> Any:
    data = load_stand(STAND_FILE).model_dump(by_alias=True)
    for instrument in data["instruments"].values():
        instrument["simulator"]["baud"] = baud
    return load_stand(data)


def link_bytes(stand: TestStand) -> dict[str, int]:
    counts = {}
    for name, device in stand.instruments.items():
        transport = device.client.transport  # type: ignore[attr-defined]
        counts[name] = transport.stats.bytes_sent + transport.stats.bytes_received
    return counts


async def full_read(stand: TestStand) -> None:
    devices: list[Device] = [stand.instruments[name] for name in FULL_READ]
    await asyncio.gather(*(device.read() for device in devices if isinstance(device, Readable)))


async def naive_hv_read(hv: CaenHV) -> None:
    for channel in range(hv.client.channels):
        for parameter in ("VMON", "IMON", "STAT"):
            await hv.client.mon(parameter, channel)


async def group_hv_read(hv: CaenHV) -> None:
    for parameter in ("VMON", "IMON", "STAT"):
        await hv.client.mon_all(parameter)


async def measure(reads: int, baud: int) -> dict[str, float]:
    stand = await open_stand(paced_config(baud))
    try:
        await full_read(stand)  # warm up: connections, first replies
        before = link_bytes(stand)
        started = time.perf_counter()
        for _ in range(reads):
            await full_read(stand)
        elapsed = time.perf_counter() - started
        after = link_bytes(stand)
        busiest = max(after[name] - before[name] for name in after)
        limit = busiest * BITS_PER_BYTE / baud
        hv = stand.instruments["hv"]
        assert isinstance(hv, CaenHV)
        started = time.perf_counter()
        await group_hv_read(hv)
        group = time.perf_counter() - started
        started = time.perf_counter()
        await naive_hv_read(hv)
        naive = time.perf_counter() - started
    finally:
        await stand.close()
    return {
        "baud": baud,
        "full_reads": reads,
        "full_read_seconds": round(elapsed / reads, 3),
        "full_reads_per_s": round(reads / elapsed, 3),
        "busiest_link_bytes_per_read": busiest // reads,
        "wire_limit_seconds_per_read": round(limit / reads, 3),
        "wire_efficiency": round(limit / elapsed, 3),
        "hv_group_read_seconds": round(group, 3),
        "hv_naive_read_seconds": round(naive, 3),
        "group_vs_naive": round(naive / group, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=5)
    parser.add_argument("--baud", type=int, default=9600)
    args = parser.parse_args()
    results = asyncio.run(measure(args.reads, args.baud))
    for key, value in results.items():
        print(f"{key:>30}: {value}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
