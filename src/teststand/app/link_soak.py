"""The link soak: thousands of commands to a faulty simulated CAEN supply, every value checked.

The client reads parameters of different reply formats in turn (a single channel's VMON, RUP,
STAT and ISET, the whole supply's VSET and MAXV) and writes set points between them, while the
simulator damages replies with every fault class at once. Each value the client accepts is
compared with the simulator's true state, read from the instrument itself just before and just
after the exchange (a ramping VMON may lie between the two). Used by the link soak test and by
`benchmarks/transport.py`. (The stand soak, every process for hours under a lab's faults, is
`benchmarks/soak.py`.)
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from teststand.devices.caen.client import CaenClient
from teststand.devices.caen.protocol import command, parse_values
from teststand.errors import TransportError

#: Every reply fault class, mixed (about 13 % of replies suffer at least one).
FAULTS = (
    "garble=0.02,noise=0.025,truncate=0.025,duplicate=0.02,unsolicited=0.02,split=0.02,drop=0.004"
)
#: Link options for a fast soak: short timeout, quick flush, no backoff, six attempts.
LINK = "timeout=0.08&flush_quiet=0.01&backoff=0&attempts=6"
CHANNEL = 1
#: (parameter, group read?) in turn: no two share a reply format, so a stale reply of one read
#: in the slot of another must be refused by the format checks.
READS = (("VMON", False), ("RUP", False), ("VSET", True), ("STAT", False), ("ISET", False))
GROUP_READ = ("MAXV", True)


@dataclass
class SoakResult:
    commands: int = 0  # commands the client issued (each may take several attempts)
    reads: int = 0
    reads_ok: int = 0
    writes: int = 0
    writes_ok: int = 0
    wrong_values: list[str] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    sim_commands: int = 0  # commands the simulator received (retries included)
    faulty_replies: int = 0
    fault_counts: dict[str, int] = field(default_factory=dict)
    link: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def faulty_fraction(self) -> float:
        return self.faulty_replies / max(self.sim_commands, 1)

    @property
    def read_success(self) -> float:
        return self.reads_ok / max(self.reads, 1)

    def figures(self) -> dict[str, Any]:
        return {
            "soak_commands": self.commands,
            "soak_sim_commands": self.sim_commands,
            "soak_faulty_fraction": round(self.faulty_fraction, 4),
            "soak_read_success": round(self.read_success, 5),
            "soak_write_success": round(self.writes_ok / max(self.writes, 1), 5),
            "soak_wrong_values": len(self.wrong_values),
            "soak_retries": int(self.link.get("retries", 0)),
            "soak_discards": int(self.link.get("discards", 0)),
            "soak_seconds": round(self.seconds, 1),
            "soak_fault_counts": dict(sorted(self.fault_counts.items())),
        }


async def link_soak(
    commands: int = 10_000, *, seed: int = 1, strict: bool = True, speed: float = 1000.0
) -> SoakResult:
    """Run at least `commands` commands; `strict=False` checks only the lenient formats."""
    url = (
        f"sim://caen-dt8033?speed={speed}&faults={FAULTS},seed={seed}&{LINK}"
        f"&strict_formats={int(strict)}"
    )
    rng = random.Random(seed)
    result = SoakResult()
    client = CaenClient(url, name="soak")
    await client.open()
    sim = client.transport.simulator
    started = time.perf_counter()
    try:
        await _prepare(client)
        reads = 0
        while result.commands < commands:
            value = _new_value(rng, reads)
            await _write(client, result, *value)
            for _ in range(2):
                par, group = READS[reads % len(READS)] if reads % 7 else GROUP_READ
                reads += 1
                await _read(client, sim.instrument, result, par, group)
    finally:
        result.seconds = time.perf_counter() - started
        result.sim_commands = sim.server.commands
        result.faulty_replies = sim.server.faulty_replies
        result.fault_counts = dict(sim.server.fault_counts)
        result.link = client.transport.stats.as_dict()
        await client.close()
    return result


async def _prepare(client: CaenClient) -> None:
    for attempt in range(20):  # the faults are on already: a step may fail, retry it
        try:
            await client.set("RDW", CHANNEL, 500)
            await client.on(CHANNEL)
            return
        except TransportError:
            if attempt == 19:
                raise


def _new_value(rng: random.Random, step: int) -> tuple[str, float]:
    choice = step % 3
    if choice == 0:
        return "VSET", round(rng.uniform(0, 300), 1)
    if choice == 1:
        return "RUP", float(rng.randint(1, 500))
    return "ISET", round(rng.uniform(500, 3000), 2)


async def _write(client: CaenClient, result: SoakResult, par: str, value: float) -> None:
    result.commands += 1
    result.writes += 1
    try:
        await client.set(par, CHANNEL, value)
    except TransportError as exc:
        result.failures[type(exc).__name__] += 1
        return
    result.writes_ok += 1


async def _read(
    client: CaenClient, instrument: Any, result: SoakResult, par: str, group: bool
) -> None:
    result.commands += 1
    result.reads += 1
    channel = client.channels if group else CHANNEL
    truth = command("MON", par, channel=channel)
    before = parse_values(instrument.handle(truth))
    try:
        values = await (client.mon_all(par) if group else client.mon(par, CHANNEL))
    except TransportError as exc:
        result.failures[type(exc).__name__] += 1
        return
    after = parse_values(instrument.handle(truth))
    got = values if isinstance(values, list) else [values]
    result.reads_ok += 1
    for index, (value, low, high) in enumerate(zip(got, before, after, strict=True)):
        if not _consistent(par, value, low, high):
            result.wrong_values.append(f"{par}[{index}]: {value!r} not in {low!r}..{high!r}")


def _consistent(par: str, value: str, before: str, after: str) -> bool:
    number, low, high = float(value), float(before), float(after)
    if number in (low, high):
        return True
    # Only VMON moves by itself (a ramp) during an exchange.
    return par == "VMON" and min(low, high) <= number <= max(low, high)
