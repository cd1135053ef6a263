"""The simulated stand with its interlock watchdog, started on the RunEngine's loop."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from bluesky import RunEngine
from helpers import run
from safety_helpers import SPEED, safety_stand_dict

from teststand.safety import Watchdog
from teststand.stand import TestStand, build


@pytest.fixture
def guarded(RE: RunEngine) -> Iterator[Callable[..., tuple[TestStand, Watchdog]]]:
    """`guarded(speed, sim, links, **interlocks)`: the simulated stand built on `RE`'s loop
    with its watchdog started (INIT); both stopped after the test."""
    made: list[tuple[TestStand, Watchdog]] = []

    def make(
        speed: float = SPEED,
        sim: dict[str, dict[str, Any]] | None = None,
        links: dict[str, dict[str, Any]] | None = None,
        **interlocks: Any,
    ) -> tuple[TestStand, Watchdog]:
        interlocks.setdefault("heartbeat_timeout", 60)  # these tests send no heartbeat
        stand = build(safety_stand_dict(speed, sim, links, **interlocks))
        watchdog = Watchdog(stand)
        made.append((stand, watchdog))
        run(RE, watchdog.start)
        return stand, watchdog

    yield make
    for stand, watchdog in made:
        run(RE, watchdog.stop)
        run(RE, stand.close)
