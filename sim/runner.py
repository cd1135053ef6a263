"""Run simulators in a background thread with their own event loop, for in-process use.

The driver under test keeps its own event loop; the simulators never block it, and it talks to
them only through real bytes on a pty or a socket.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, Literal, TypeVar

from teststand.sim.clock import SimClock
from teststand.sim.faults import Faults
from teststand.sim.instrument import SimInstrument
from teststand.sim.registry import create
from teststand.sim.server import SimServer

T = TypeVar("T")


class SimThread:
    """An event loop in a daemon thread that hosts any number of simulators."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="teststand-sim", daemon=True
        )
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def call(self, function: Callable[[], T], timeout: float = 10.0) -> T:
        """Run a plain function on the simulators' loop (for state changes); return its result."""

        async def wrapper() -> T:
            return function()

        return self.run(wrapper(), timeout)

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


class RunningSim:
    """A simulator being served: its address, its instrument, and its controls."""

    def __init__(self, host: SimThread, server: SimServer, owns_host: bool) -> None:
        self.host = host
        self.server = server
        self._owns_host = owns_host

    @property
    def instrument(self) -> SimInstrument:
        return self.server.instrument

    @property
    def address(self) -> str:
        return self.server.address

    @property
    def kind(self) -> str:
        return self.server.instrument.kind

    def set_faults(self, spec: str) -> None:
        self.host.call(lambda: self.server.set_faults(spec))

    def reset(self) -> None:
        self.host.call(self.server.reset)

    def unplug(self) -> None:
        self.host.call(self.server.unplug)

    def stop(self) -> None:
        if self.host.loop.is_closed():
            return
        self.host.run(self.server.stop())
        if self._owns_host:
            self.host.close()

    def __enter__(self) -> RunningSim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_simulator(
    kind: str,
    *,
    transport: Literal["pty", "tcp"] = "pty",
    host: str = "127.0.0.1",
    port: int = 0,
    speed: float = 1.0,
    baud: int | None = None,
    latency: float = 0.0,
    faults: str | None = None,
    clock: SimClock | None = None,
    thread: SimThread | None = None,
    **options: Any,
) -> RunningSim:
    """Start simulator `kind` and serve it; returns once its address is ready.

    `options` go to the instrument (see `teststand sim serve KIND --help`). Pass `thread` to host
    several simulators on one loop (and `clock` to share simulated time).
    """
    instrument = create(kind, clock or SimClock(speed), **options)
    server_faults = Faults.parse(faults)
    sim_thread = thread or SimThread()

    async def serve() -> SimServer:
        server = SimServer(instrument, server_faults, baud=baud, latency=latency)
        if transport == "tcp":
            await server.start_tcp(host, port)
        else:
            await server.start_pty()
        return server

    try:
        server = sim_thread.run(serve())
    except BaseException:
        if thread is None:
            sim_thread.close()
        raise
    return RunningSim(sim_thread, server, owns_host=thread is None)
