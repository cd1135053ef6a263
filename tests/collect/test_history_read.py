"""A collector's T and V waveforms read as one history while the ring overwrites itself.

The source PV's value is its own timestamp, so a sample's V equals its T: T and V from two
different publishes (the ring moved on between the two reads) differ. The collector (its own
process, a 32-sample ring published every 5 ms) records the source at ~500 Hz.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from bluesky import RunEngine
from bluesky.run_engine import call_in_bluesky_event_loop
from helpers import ca_server_script

from teststand.collect.device import read_history

SERVER = r"""
import asyncio, sys, time
from caproto import ChannelDouble
from teststand.collect.config import make_config
from teststand.collect.server import CollectorServer
config = make_config(name="race", prefix="RACE:", pvs=["RACE:SOURCE"], length=32, publish=0.005)
server = CollectorServer(config)
source = ChannelDouble(value=0.0, precision=6)
server.pvdb["RACE:SOURCE"] = source
async def feed():
    while True:
        now = time.time()
        await source.write(now, timestamp=now)
        await asyncio.sleep(0.002)
async def main():
    task = asyncio.get_running_loop().create_task(feed())
    await server.run(["127.0.0.1"], lambda: print("serving", flush=True))
asyncio.run(main())
"""


@pytest.fixture(scope="module")
def racing_collector() -> Iterator[None]:
    with ca_server_script(SERVER):
        yield


def test_times_and_values_come_from_the_same_publish(RE: RunEngine, racing_collector: None) -> None:
    async def reads() -> list[tuple[np.ndarray, np.ndarray]]:  # type: ignore[type-arg]
        return [await read_history("RACE:", 1) for _ in range(200)]

    histories = call_in_bluesky_event_loop(reads(), timeout=60)
    full = [(t, v) for t, v in histories if len(t) == 32]
    assert len(full) > 150, "the ring never filled"
    assert len({t[-1] for t, _ in full}) >= 3, "the history did not move between reads"
    for times, values in full:
        assert len(times) == len(values)
        np.testing.assert_allclose(values, times, rtol=0, atol=1e-5)
