"""A real Tiled server (`teststand tiled serve`, its own process) shared by this folder."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from teststand.storage.embedded import EmbeddedServer


@pytest.fixture(scope="session")
def tiled_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    server = EmbeddedServer(tmp_path_factory.mktemp("tiled"))
    server.wait_ready(180)
    yield server
    server.close()


@pytest.fixture
def tiled_client(tiled_server: EmbeddedServer) -> Any:
    return tiled_server.client()
