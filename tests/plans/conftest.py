"""The simulated 8-slot stand of profile_collection/stand.yaml, sped up, built on a RunEngine."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from bluesky import RunEngine
from helpers import run, stand_dict

from teststand.stand import TestStand, build


@pytest.fixture
def make_stand(RE: RunEngine) -> Iterator[Callable[..., TestStand]]:
    """`make_stand(speed=..., **changes)` builds the simulated stand; closed after the test."""
    built: list[TestStand] = []

    def make(speed: float = 200.0, **changes: Any) -> TestStand:
        stand = build(stand_dict(speed, **changes))
        built.append(stand)
        return stand

    yield make
    for stand in built:
        run(RE, stand.close)


@pytest.fixture
def stand(make_stand: Callable[..., TestStand]) -> TestStand:
    """The simulated stand at 200x speed."""
    return make_stand()
