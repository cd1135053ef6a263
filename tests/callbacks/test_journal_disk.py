"""A full disk for the journal: an early warning, and the run still lands whole in Tiled."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bluesky.plans as bp
import pytest
from bluesky import RunEngine
from helpers import small_tmpfs
from ophyd_async.core import StandardReadable, StandardReadableFormat, init_devices, soft_signal_rw

from teststand.callbacks.tiled_writer import LiveTiledWriter
from teststand.storage.errors import JournalSpaceLow


class Gauge(StandardReadable):
    def __init__(self, name: str = "") -> None:
        with self.add_children_as_readables(StandardReadableFormat.HINTED_SIGNAL):
            self.reading = soft_signal_rw(float, 7.0, units="mbar")
        super().__init__(name=name)


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 kB tmpfs, without root."""
    with small_tmpfs(tmp_path / "tiny", "64k") as folder:
        yield folder


def test_full_journal_disk_warns_early_and_loses_nothing(
    tiled_server: Any, tiny_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    RE = RunEngine(call_returns_result=False)
    with init_devices():
        gauge = Gauge()
    (tiny_disk / "filler").write_bytes(b"x" * 40_000)
    writer = LiveTiledWriter(tiled_server.client, tiny_disk / "journal")
    RE.subscribe(writer)
    caplog.set_level(logging.ERROR, "teststand")
    with pytest.warns(JournalSpaceLow, match="MB free for the run journal"):
        (uid,) = RE(bp.count([gauge], 300, md={"note": str(uuid.uuid4())}))
    assert writer.wait(60)
    writer.close()
    assert "cannot write the run journal" in caplog.text
    table = tiled_server.client()[uid]["primary"].base["internal"].read()
    assert sorted(table["seq_num"]) == list(range(1, 301))
