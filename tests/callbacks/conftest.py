"""A real Tiled server (`teststand tiled serve` in its own process) per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from teststand.storage.embedded import EmbeddedServer


@pytest.fixture
def tiled_server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    server = EmbeddedServer(tmp_path / "tiled")
    server.wait_ready(60)
    yield server
    server.close()


@pytest.fixture
def tiled_client(tiled_server: EmbeddedServer) -> Any:
    return tiled_server.client()
