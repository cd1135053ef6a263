"""A real Tiled server (`teststand tiled serve`, its own process) shared by this folder."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from bluesky import RunEngine
from helpers import postgres_bin, postgres_cluster
from iv_runs import CONTAINER, A, B, C, Module, Slot, States, Stored, iv_plan, temperature_plan
from ophyd_async.core import init_devices, soft_signal_rw

from teststand.callbacks.iv_analysis import IVAnalysis
from teststand.callbacks.tiled_writer import LiveTiledWriter
from teststand.storage.catalog import Catalog
from teststand.storage.embedded import EmbeddedServer


@pytest.fixture(scope="session")
def tiled_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    # Detector files (HDF5) written under tiled/detector are registered in place, never copied.
    root = tmp_path_factory.mktemp("tiled")
    server = EmbeddedServer(root, detector_dir=root / "detector")
    server.wait_ready(180)
    yield server
    server.close()


@pytest.fixture
def tiled_client(tiled_server: EmbeddedServer) -> Any:
    return tiled_server.client()


@pytest.fixture(scope="session")
def stored(tiled_server: EmbeddedServer, tmp_path_factory: pytest.TempPathFactory) -> Stored:
    """Two IV stages of modules A and B, an aborted IV, two temperature runs, in CONTAINER."""
    RE = RunEngine(call_returns_result=True)
    with init_devices():
        slot1, slot2, states = Slot(), Slot(), States(name="iv")
        voltage = soft_signal_rw(float, 0.0, name="iv_voltage", units="V")
    slots = {"1": slot1, "2": slot2}
    analysis = IVAnalysis()
    # The runs go into their own container: searches of other tests at the root never see them.
    tiled_server.client().create_container(CONTAINER)
    writer = LiveTiledWriter(
        lambda: tiled_server.client()[CONTAINER],
        tmp_path_factory.mktemp("journal"),
        flush_interval=0.05,
    )
    starts: list[str] = []
    events: dict[str, int] = {}
    RE.subscribe(analysis)
    RE.subscribe(writer)
    RE.subscribe(lambda name, doc: starts.append(doc["uid"]) if name == "start" else None)
    RE.subscribe(
        lambda name, doc: (
            events.__setitem__(starts[-1], events.get(starts[-1], 0) + 1)
            if name == "event"
            else None
        )
    )
    a_warm, b_warm = Module(A, 200, 2e-6), Module(B, 150, 2e-6)
    a_cold, b_cold = Module(A, 200, 2.4e-6), Module(B, 200, 5e-6)
    RE(iv_plan(slots, states, voltage, "INITIAL_WARM", {"1": a_warm, "2": b_warm}, 20.0))
    with pytest.raises(RuntimeError, match="on purpose"):  # newer, but not completed
        RE(iv_plan(slots, states, voltage, "INITIAL_WARM", {"1": Module(A, 200, 50e-6)}, 20, 4))
    RE(iv_plan(slots, states, voltage, "INITIAL_COLD", {"1": b_cold, "2": a_cold}, -25.0))
    RE(temperature_plan(slots, {"1": a_cold}, [-25.0, -10.0, 5.0, 20.0]))
    RE(temperature_plan(slots, {"2": Module(C, 200, 1e-6)}, [20.0, 21.0]))
    assert writer.wait(30)
    writer.close()
    client = tiled_server.client()[CONTAINER]
    uids = dict(zip(["warm", "aborted", "cold", "temperature", "c"], starts, strict=True))
    for name in ("warm", "aborted"):  # the cold run's analysis is left for the report to redo
        client[uids[name]].update_metadata(analysis.summaries[uids[name]])
    return Stored(Catalog(client), tiled_server, uids, analysis.summaries, events)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """One real PostgreSQL server for the session (`make test` installs its binaries)."""
    bindir = postgres_bin()
    assert bindir is not None, (
        "PostgreSQL's initdb and pg_ctl are not installed: `make test` installs them as root "
        "(apt-get install postgresql)"
    )
    with postgres_cluster(bindir) as uri:
        yield uri


@pytest.fixture
def postgres(postgres_server: str) -> str:
    """A fresh, empty database on the session's PostgreSQL server; its URI."""
    import asyncpg

    name = f"test_{uuid.uuid4().hex[:12]}"

    async def create() -> None:
        connection = await asyncpg.connect(postgres_server)
        try:
            await connection.execute(f"CREATE DATABASE {name}")
        finally:
            await connection.close()

    asyncio.run(create())
    return postgres_server.rsplit("/", 1)[0] + "/" + name
