"""What the queue tests share: the profile directory and a handle on a running RE Manager."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

from bluesky_queueserver_api.zmq import REManagerAPI

from teststand.app.cli import main
from teststand.app.operator import Operator
from teststand.config import load_stand

REPO = Path(__file__).resolve().parents[2]
PROFILE = REPO / "profile_collection"
SHORT_IV = {"slots": "1-2", "stop": 20, "step": 10, "settle": 0}


@dataclass
class Manager:
    state_dir: Path
    stand: Path

    def operator(self, **options: object) -> Operator:
        storage = load_stand(self.stand).storage
        return Operator.from_state_dir(self.state_dir, storage=storage, **options)

    def cli(self, *argv: str) -> tuple[int, str]:
        """`teststand queue ARGV... --stand ... --state-dir ...`: exit status and output."""
        where = ["--stand", str(self.stand), "--state-dir", str(self.state_dir)]
        output = io.StringIO()
        with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
            code = main(["queue", *argv, *where])
        return code, output.getvalue()


def wait_until_run(api: REManagerAPI, history: int) -> None:
    """Until the queue ran empty into a history of `history` items. (`wait_for_idle` alone can
    see a status cached before the start, still idle, and return at once.)"""
    api.wait_for_condition(
        lambda status: (
            status["manager_state"] == "idle"
            and status["items_in_queue"] == 0
            and status["items_in_history"] == history
        ),
        timeout=120,
    )
