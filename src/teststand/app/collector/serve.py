"""Run one caproto server (a collector or a processing device) until SIGINT/SIGTERM.

The first stdout line is `serving PREFIX (N PVs)`, printed once the server's sockets are bound
(it answers searches from then on): the factory and the tests wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any, Protocol


class Served(Protocol):
    pvdb: dict[str, Any]

    async def run(
        self, interfaces: Sequence[str], on_ready: Callable[[], None] | None = None
    ) -> None: ...


async def serve_until_stopped(server: Served, prefix: str, interfaces: Sequence[str]) -> int:
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)

    def ready() -> None:
        print(f"serving {prefix} ({len(server.pvdb)} PVs)")
        sys.stdout.flush()

    with contextlib.suppress(asyncio.CancelledError):
        await server.run(interfaces, ready)
    return 0
