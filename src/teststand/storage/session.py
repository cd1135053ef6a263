"""A Tiled client for a stand's storage settings: its shared server or its embedded one."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from teststand.storage.client import connect, probe
from teststand.storage.config import StorageConfig
from teststand.storage.embedded import STATE_FILE, EmbeddedServer
from teststand.storage.errors import TiledUnreachable
from teststand.storage.server import stored_api_key


@contextmanager
def storage_client(config: StorageConfig) -> Iterator[Any]:
    """Connect to `config.tiled`; without one, to the embedded server (started if not running)."""
    if config.tiled is not None:
        yield connect(config.tiled, config.resolved_api_key())
        return
    data = config.data_path
    try:
        url = str(json.loads((data / STATE_FILE).read_text())["url"])
        probe(url, timeout=1.0)
    except (OSError, ValueError, KeyError, TiledUnreachable):
        with EmbeddedServer(data, config.detector_path) as server:
            yield server.client()
        return
    yield connect(url, stored_api_key(data))
