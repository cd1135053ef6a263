"""Our caproto servers (the IOC, collectors, processing devices) keep a bounded backlog per
subscription: a client that stays connected does not grow the server with every update it got.

caproto keeps each subscription's last updates, sent or not (1000 by default): the IOC grew by
about 100 MB for one monitor of every PV, and by several MB an hour in the soak. The server here
(its own process) serves a PV updated every 2 ms and, as `BL:KEPT`, how many updates its
circuits hold.
"""

from __future__ import annotations

import asyncio
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
source, kept = ChannelDouble(value=0.0), ChannelInteger(value=0)
async def feed(context):
    count = 0
    while True:
        count += 1
        await source.write(float(count))
        if count % 25 == 0:
            held = sum(len(d) for c in context.circuits for d in c.unexpired_updates.values())
            await kept.write(held)
        await asyncio.sleep(0.002)
async def main():
    context = ServerContext({"BL:SOURCE": source, "BL:KEPT": kept}, ["127.0.0.1"])
    asyncio.get_running_loop().create_task(feed(context))
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
    assert 0 < kept <= SUBSCRIPTION_BACKLOG + 2  # this client's one subscription (+ BL:KEPT's read)
