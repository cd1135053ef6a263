"""The simulated 8-slot stand of profile_collection/stand.yaml, sped up, built on a RunEngine."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from bluesky import RunEngine
from helpers import run

from teststand.stand import TestStand, build

STAND_FILE = Path(__file__).parents[2] / "profile_collection" / "stand.yaml"


def stand_dict(speed: float = 200.0, **changes: Any) -> dict[str, Any]:
    """The profile's stand file as a dict, sped up, with top-level `changes` applied."""
    data: dict[str, Any] = yaml.safe_load(STAND_FILE.read_text())
    data.update(speed=speed, **changes)
    return data


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
