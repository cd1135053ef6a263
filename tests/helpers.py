"""Helpers shared by the tests (plain functions; fixtures live in conftest.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from bluesky import RunEngine


def run(RE: RunEngine, make: Callable[[], Awaitable[Any]], timeout: float = 60) -> Any:
    """Await `make()` on the RunEngine's event loop, where the devices live."""

    async def call() -> Any:
        return await make()

    return asyncio.run_coroutine_threadsafe(call(), RE.loop).result(timeout)
