"""Our caproto servers (the IOC, collectors, processing devices) keep a bounded backlog per
subscription: a client that stays connected does not grow the server with every update it got,
and a client that leaves while its PVs update leaves nothing behind.

caproto keeps each subscription's last updates, sent or not (1000 by default): the IOC grew by
about 100 MB for one monitor of every PV, and by several MB an hour in the soak. The server here
(its own process) serves a PV updated every 2 ms and, as `BL:KEPT` and `BL:CIRCUITS`, how many
updates its circuits hold and how many circuits it has.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from aioca import caget, camonitor
from bluesky import RunEngine
from bluesky.run_engine import call_in_bluesky_event_loop
from helpers import ca_server_script

from teststand.collect.caserver import SUBSCRIPTION_BACKLOG

SERVER = r"""
import asyncio
from caproto import ChannelDouble, ChannelInteger
from teststand.collect.caserver import ServerContext
source, slow = ChannelDouble(value=0.0), ChannelDouble(value=0.0)
kept, circuits = ChannelInteger(value=0), ChannelInteger(value=0)
async def feed(context):
    count = 0
    while True:
        count += 1
        await source.write(float(count))
        if count % 25 == 0:
            held = sum(len(d) for c in context.circuits for d in c.unexpired_updates.values())
            await kept.write(held)
            await circuits.write(len(context.circuits))
            await slow.write(float(count))
        await asyncio.sleep(0.002)
async def main():
    pvs = {"BL:SOURCE": source, "BL:SLOW": slow, "BL:KEPT": kept, "BL:CIRCUITS": circuits}
    context = ServerContext(pvs, ["127.0.0.1"])
    asyncio.get_running_loop().create_task(feed(context))
    print("serving", flush=True)
    await context.run()
asyncio.run(main())
"""


#: A client that watches BL:SOURCE and dies (no goodbye to the server) after 50 updates.
LEAVING = r"""
import asyncio, os
from aioca import camonitor
async def main():
    seen = []
    camonitor("BL:SOURCE", seen.append, all_updates=True)
    while len(seen) < 50:
        await asyncio.sleep(0.01)
    os._exit(0)
asyncio.run(main())
"""


#: 100 PVs on a server whose loop is blocked 50 ms in every turn (a loaded IOC's long turns).
SLOW_LOOP = r"""
import asyncio, time
from caproto import ChannelDouble
from teststand.collect.caserver import ServerContext
async def hog():
    while True:
        time.sleep(0.05)
        await asyncio.sleep(0)
async def main():
    pvs = {f"SL:P{i}": ChannelDouble(value=float(i)) for i in range(100)}
    context = ServerContext(pvs, ["127.0.0.1"])
    asyncio.get_running_loop().create_task(hog())
    print("serving", flush=True)
    await context.run()
asyncio.run(main())
"""


@pytest.fixture(scope="module")
def server() -> Iterator[None]:
    with ca_server_script(SERVER):
        yield


def test_a_watching_client_costs_a_bounded_backlog(RE: RunEngine, server: None) -> None:
    async def watch() -> tuple[int, int]:
        seen: list[float] = []
        subscription = camonitor("BL:SOURCE", seen.append, all_updates=True)
        try:
            while len(seen) < 10 * SUBSCRIPTION_BACKLOG:  # noqa: ASYNC110 (counts updates)
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)  # BL:KEPT counted after them
            return len(seen), int(await caget("BL:KEPT", timeout=5))
        finally:
            subscription.close()

    seen, kept = call_in_bluesky_event_loop(watch(), timeout=60)
    assert seen >= 10 * SUBSCRIPTION_BACKLOG
    assert kept <= SUBSCRIPTION_BACKLOG + 2  # this client's one subscription (+ BL:KEPT's read)


def test_updates_sent_are_not_kept(RE: RunEngine, server: None) -> None:
    """A client that keeps up with a PV updated every 50 ms: nothing of it stays in the server,
    nor of the fast PV's subscription it cancelled first (caproto kept the last 20 updates of
    each, sent or not, cancelled or not: the IOC grew with each plan's subscriptions)."""

    async def watch() -> int:
        fast: list[float] = []
        subscription = camonitor("BL:SOURCE", fast.append, all_updates=True)
        while len(fast) < 2 * SUBSCRIPTION_BACKLOG:  # noqa: ASYNC110 (counts updates)
            await asyncio.sleep(0.05)
        subscription.close()
        seen: list[float] = []
        subscription = camonitor("BL:SLOW", seen.append, all_updates=True)
        try:
            while len(seen) < 2 * SUBSCRIPTION_BACKLOG:  # noqa: ASYNC110 (counts updates)
                await asyncio.sleep(0.05)
            return int(await caget("BL:KEPT", timeout=5))
        finally:
            subscription.close()

    assert call_in_bluesky_event_loop(watch(), timeout=60) <= 2


def test_clients_leaving_while_updates_flow_leave_no_circuit(RE: RunEngine, server: None) -> None:
    def circuits() -> int:
        time.sleep(0.3)  # BL:CIRCUITS is counted every 50 ms
        return int(call_in_bluesky_event_loop(caget("BL:CIRCUITS", timeout=5), timeout=10))

    before = circuits()  # this process's own circuit among them
    leaving = [subprocess.Popen([sys.executable, "-c", LEAVING]) for _ in range(20)]
    assert [process.wait(60) for process in leaving] == [0] * 20
    deadline = time.monotonic() + 10
    while (left := circuits()) != before and time.monotonic() < deadline:
        pass
    # caproto 1.3's update sender swallowed the cancel of a leaving client's circuit (Python
    # 3.11's wait_for) and the server kept the circuit with its updates for good
    assert left == before, f"{left - before} of 20 departed clients' circuits still in the server"


def test_a_burst_of_reads_is_answered_in_a_few_turns_of_a_slow_loop(RE: RunEngine) -> None:
    """A plan's baseline reads a hundred PVs at once. caproto answered the reads queued on a
    circuit one per turn of the server's loop or two (its wait for a write in progress, even
    with none, took a task and a turn): with 50 ms turns, 100 reads took more than 5 s, and on a
    loaded machine the IOC's reads passed the client's 8 s timeout."""

    async def burst() -> float:
        names = [f"SL:P{i}" for i in range(100)]
        await caget(names[:1], timeout=30)  # connected (the connects are not timed)
        await caget(names, timeout=30)
        started = time.monotonic()
        values = await caget(names, timeout=30)
        assert [float(v) for v in values] == [float(i) for i in range(100)]
        return time.monotonic() - started

    with ca_server_script(SLOW_LOOP):
        took = call_in_bluesky_event_loop(burst(), timeout=120)
    assert took < 2.0, f"100 reads took {took:.1f} s on a server with 50 ms loop turns"
