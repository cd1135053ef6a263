"""Helpers shared by the tests (plain functions; fixtures live in conftest.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml
from bluesky import RunEngine


def run(RE: RunEngine, make: Callable[[], Awaitable[Any]], timeout: float = 60) -> Any:
    """Await `make()` on the RunEngine's event loop, where the devices live."""

    async def call() -> Any:
        return await make()

    return asyncio.run_coroutine_threadsafe(call(), RE.loop).result(timeout)


STAND_FILE = Path(__file__).parents[1] / "profile_collection" / "stand.yaml"


def stand_dict(speed: float = 200.0, **changes: Any) -> dict[str, Any]:
    """The profile's simulated stand file as a dict, sped up, with top-level `changes` applied."""
    data: dict[str, Any] = yaml.safe_load(STAND_FILE.read_text())
    data.update(speed=speed, **changes)
    return data
