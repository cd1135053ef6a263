"""Replaying stored runs from Tiled through callbacks (`replay`, `teststand replay`), and reading
them with databroker's v1 API over the same server."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from bluesky.callbacks.core import CallbackBase
from iv_runs import CONTAINER, Stored

from teststand.app.cli import main
from teststand.callbacks.iv_analysis import IVAnalysis
from teststand.storage.playback import documents, replay

PNG = b"\x89PNG\r\n\x1a\n"


class Recorder(CallbackBase):
    """A callback a user might write: it keeps the names and the event data it was fed."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []
        self.voltages: list[float] = []

    def __call__(self, name: str, doc: dict[str, Any]) -> Any:
        self.names.append(name)
        return super().__call__(name, doc)

    def event(self, doc: dict[str, Any]) -> dict[str, Any]:
        self.voltages.append(doc["data"]["iv_voltage"])
        return doc


def test_replay_feeds_the_documents_in_order(stored: Stored) -> None:
    uid = stored.uids["cold"]
    recorder, analysis = Recorder(), IVAnalysis()
    seen: list[str] = []
    count = replay(
        uid, [recorder, analysis, lambda name, doc: seen.append(name)], catalog=stored.catalog
    )
    names = recorder.names
    assert names == seen and count == len(names)
    assert names[0] == "start" and names[-1] == "stop" and names[1] == "descriptor"
    assert names.count("event") == stored.events[uid]
    assert recorder.voltages == sorted(recorder.voltages)  # the scan's order
    # The replayed analysis gives what the live one gave.
    assert analysis.summaries[uid] == json.loads(json.dumps(stored.live[uid]))


def test_an_aborted_run_replays_with_its_exit_status(stored: Stored) -> None:
    found = list(documents(stored.catalog.run(stored.uids["aborted"])))
    assert found[-1][0] == "stop" and found[-1][1]["exit_status"] == "fail"


def test_the_replay_command(stored: Stored, tmp_path: Path) -> None:
    uid = stored.uids["warm"]
    where = ["--tiled", f"{stored.server.url}/api/v1/metadata/{CONTAINER}"]
    where += ["--api-key", stored.server.api_key]
    output = io.StringIO()
    plot = tmp_path / "iv.png"
    with redirect_stdout(output):
        code = main(["replay", uid, "--analysis", "--table", "--plot", str(plot), *where])
    text = output.getvalue()
    assert code == 0, text
    assert f"replayed {2 + stored.events[uid] + 1} documents of run {uid}" in text
    assert '"verdict": "pass"' in text
    assert re.search(r"\|\s+seq_num \|\s+time \|\s+step V \|\s+slot1 I µA", text)  # the table
    assert text.count("measuring") == 0 and "slot 2 · 20UPGM22110002 stopped: done" in text
    assert plot.read_bytes().startswith(PNG)


def test_replay_of_an_unknown_run_is_one_clear_error(
    stored: Stored, capsys: pytest.CaptureFixture[str]
) -> None:
    where = ["--tiled", stored.server.url, "--api-key", stored.server.api_key]
    assert main(["replay", "no-such-run", "--table", *where]) == 1
    assert "error: no run 'no-such-run' in Tiled" in capsys.readouterr().err


# databroker.v1 changes how every later Tiled client of the process reads runs (replay then
# fails with AttributeError: base), so the check runs in a process of its own.
DATABROKER_CHECK = """
import json, sys
from databroker.v1 import Broker
from tiled.client import from_uri
url, api_key, container, uid = sys.argv[1:]
header = Broker(from_uri(url, api_key=api_key)[container])[uid]
table = header.table()
print(json.dumps({
    "start_uid": header.start["uid"],
    "exit_status": header.stop["exit_status"],
    "rows": len(table),
    "volts": table["iv_voltage"].tolist(),
    "names": [name for name, _ in header.documents()],
}))
"""


def test_databroker_v1_reads_the_runs_over_the_same_server(stored: Stored) -> None:
    uid = stored.uids["warm"]
    command = [sys.executable, "-c", DATABROKER_CHECK, stored.server.url]
    command += [stored.server.api_key, CONTAINER, uid]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["start_uid"] == uid and seen["exit_status"] == "success"
    assert seen["rows"] == stored.events[uid]
    assert seen["volts"] == sorted(seen["volts"])
    names = seen["names"]
    assert names[0] == "start" and names[-1] == "stop"
    assert names.count("event") == stored.events[uid]
