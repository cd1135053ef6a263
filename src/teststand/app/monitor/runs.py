"""Run starts and stops from the RunEngine's documents as events in InfluxDB (Grafana
annotations): `RE.subscribe(RunEvents(config))` in the profile when the stand has `monitoring:`.

Each start is an event `kind=run` with the plan, test, stage and module ids; each stop one with
the exit status, and the verdict once the IV analysis publishes it (`verdict(uid, summary)`).
Points go out from a thread of their own through the same `Shipper` and journal as the monitor's
(under `journal_dir/runs`), so the RunEngine never waits for the database.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Mapping
from typing import Any

from teststand.app.monitor.database import Database
from teststand.app.monitor.journal import Journal
from teststand.app.monitor.lineprotocol import FieldValue, line
from teststand.app.monitor.recorder import EVENTS
from teststand.app.monitor.shipper import Shipper
from teststand.config import StandConfig
from teststand.storage.monitoring import MonitoringConfig

log = logging.getLogger("teststand.monitor")


def _module_ids(start: Mapping[str, Any]) -> str:
    slots = start.get("slots") or {}
    ids = [str(info.get("module_id", "")) for info in slots.values() if isinstance(info, dict)]
    return " ".join(sorted(filter(None, ids)))


class RunEvents:
    """A bluesky callback writing run events; `close()` sends what is left and stops."""

    def __init__(
        self, config: StandConfig, settings: MonitoringConfig, period: float = 0.5
    ) -> None:
        self.stand = config.name
        self.settings = settings
        self.period = period
        self._lines: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._starts: dict[str, Mapping[str, Any]] = {}
        self._stopped = threading.Event()
        journal = Journal(
            settings.journal_dir / "runs", settings.journal_max_bytes, settings.journal_warn
        )
        self._journal = journal
        self._thread = threading.Thread(target=self._serve, name="run-events", daemon=True)
        self._thread.start()

    def __call__(self, name: str, document: Mapping[str, Any]) -> None:
        if name == "start":
            self._starts[document["uid"]] = document
            plan = str(document.get("plan_name", ""))
            self._event(
                document["uid"],
                document.get("time", time.time()),
                f"run start: {plan}",
                plan=plan,
                test=str(document.get("test", "")),
                stage=str(document.get("stage", "")),
                module_ids=_module_ids(document),
            )
        elif name == "stop":
            start = self._starts.pop(document["run_start"], {})
            plan = str(start.get("plan_name", ""))
            self._event(
                document["run_start"],
                document.get("time", time.time()),
                f"run stop: {plan} ({document.get('exit_status', '')})",
                plan=plan,
                exit_status=str(document.get("exit_status", "")),
                reason=str(document.get("reason", "")),
                module_ids=_module_ids(start),
            )

    def verdict(self, uid: str, summary: Mapping[str, Any]) -> None:
        """The IV analysis' summary of a run (its `publish` hook)."""
        self._event(
            uid,
            time.time(),
            f"verdict: {summary.get('verdict', '')}",
            verdict=str(summary.get("verdict", "")),
        )

    def _event(self, uid: str, stamp: float, title: str, **fields: FieldValue) -> None:
        values: dict[str, FieldValue] = {"title": title, "text": title, "uid": uid, **fields}
        tags = {"stand": self.stand, "kind": "run"}
        self._lines.put(line(EVENTS, tags, values, int(stamp * 1e9)))

    def wait(self, timeout: float) -> None:
        """Give the thread up to `timeout` s to take what is queued (the journal keeps it)."""
        deadline = time.monotonic() + timeout
        while not self._lines.empty() and time.monotonic() < deadline:
            self._stopped.wait(0.05)

    def close(self) -> None:
        self._stopped.set()
        self._thread.join(30)

    def _serve(self) -> None:
        asyncio.run(self._ship())

    async def _ship(self) -> None:
        database = Database(self.settings.database)
        shipper = Shipper(database, self._journal, self.settings.batch_size)
        try:
            while True:
                stopping = self._stopped.is_set()
                while not self._lines.empty():
                    shipper.add(self._lines.get())
                await shipper.flush()
                if stopping:
                    return
                await asyncio.sleep(self.period)
        finally:
            await database.close()
