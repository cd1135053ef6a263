"""The queue server, for the page: its status polled into the hub, and the operators' requests.

Every request goes through `teststand.app.operator.Operator` (bluesky-queueserver-api over
0MQ) in a worker thread, as the queue's user named after the web user. `health.queue` says when
the queue server does not answer, and clears when it answers again. The verdicts of finished
items are read from Tiled once per item (`Operator.results`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from teststand.app.operator import Operator
from teststand.app.operator.items import QueueItem, QueueStatus
from teststand.app.web.hub import Hub
from teststand.errors import TeststandError
from teststand.storage.config import StorageConfig

log = logging.getLogger("teststand.web")
HISTORY = 10
#: Plans the page's form may queue, with the arguments it may give them.
FORM_PLANS = {
    "iv_scan": ("slots", "stage", "stop", "step", "settle"),
    "module_qualification": ("slots", "stage"),
}


def _item(item: QueueItem) -> dict[str, Any]:
    return {
        "uid": item.uid,
        "call": item.call(),
        "name": item.name,
        "kwargs": dict(item.kwargs),
        "user": item.user,
        "exit_status": item.exit_status,
        "message": item.message,
        "runs": list(item.run_uids),
    }


class QueueWatcher:
    """Polls the RE Manager of `state_dir` every `period` s into the hub's `queue` key."""

    def __init__(
        self, state_dir: Path, storage: StorageConfig, hub: Hub, period: float = 0.5
    ) -> None:
        self.state_dir = state_dir
        self.storage = storage
        self.hub = hub
        self.period = period
        self.status: QueueStatus | None = None
        self.verdicts: dict[str, list[dict[str, Any]]] = {}
        self.listeners: list[Callable[[QueueStatus], None]] = []
        self._reader: Operator | None = None

    def _operator(self, user: str | None = None) -> Operator:
        return Operator.from_state_dir(self.state_dir, storage=self.storage, user=user, timeout=3.0)

    def _read(self) -> QueueStatus:
        if self._reader is None:
            self._reader = self._operator("web")
        try:
            return self._reader.status(history=HISTORY)
        except Exception:
            self._reader.close()
            self._reader = None
            raise

    def _verdicts(self, uid: str) -> list[dict[str, Any]]:
        assert self._reader is not None
        runs = self._reader.results(uid, wait=0.0)
        return [
            {"uid": r.uid, "test": r.test, "verdict": r.verdict, "modules": list(r.module_ids)}
            for r in runs
        ]

    async def run(self) -> None:
        while True:
            try:
                status = await asyncio.to_thread(self._read)
            except (TeststandError, OSError, TimeoutError) as exc:
                self.hub.set(
                    "health.queue",
                    f"the queue server does not answer ({exc}); start it with `teststand qserver "
                    "start`. The page recovers when it answers",
                )
            else:
                self.status = status
                self.hub.set("health.queue", "")
                await self._finished_verdicts(status)
                self.hub.set("queue", self._shown(status))
                for listener in self.listeners:
                    listener(status)
            await asyncio.sleep(self.period)

    async def _finished_verdicts(self, status: QueueStatus) -> None:
        for item in status.history:
            if item.uid in self.verdicts or not item.run_uids:
                continue
            try:
                verdicts = await asyncio.to_thread(self._verdicts, item.uid)
            except TeststandError as exc:  # not stored yet: asked again at the next poll
                log.info("verdicts of %s not read yet: %s", item.uid, exc)
                continue
            if all(v["verdict"] is not None or v["test"] != "iv" for v in verdicts):
                self.verdicts[item.uid] = verdicts  # complete (an IV run's analysis is stored)

    def _shown(self, status: QueueStatus) -> dict[str, Any]:
        history = []
        for item in reversed(status.history):
            entry = _item(item)
            entry["verdicts"] = self.verdicts.get(item.uid, [])
            history.append(entry)
        return {
            "manager_state": status.manager_state,
            "environment_open": status.environment_open,
            "running": _item(status.running) if status.running else None,
            "queue": [_item(item) for item in status.queue],
            "history": history,
            "locked": list(status.locked),
        }

    # ---- requests (the caller has checked the user's permission) ----
    async def request(self, user: str, action: str, **kwargs: Any) -> str:
        """Run `action` (add, start, pause, resume, abort, reset) as `user`; says what
        happened."""
        return await asyncio.to_thread(self._request, user, action, kwargs)

    def _request(self, user: str, action: str, kwargs: dict[str, Any]) -> str:
        operator = self._operator(user)
        try:
            if action == "add":
                plan = kwargs.pop("plan")
                uid = operator.submit(plan, start=False, **kwargs)
                return f"queued {plan} ({uid[:8]})"
            if action == "start":
                operator.start()
                return "queue started"
            if action == "pause":
                operator.pause()
                return "pause requested (at the next checkpoint)"
            if action == "resume":
                operator.resume()
                return "resumed"
            if action == "abort":
                aborted = operator.abort()
                return f"aborted {aborted.call()}" if aborted else "nothing to abort"
            if action == "reset":  # the worker holds the IOC's control
                return str(operator.execute("reset_stand", why=kwargs["why"]))
            raise ValueError(f"unknown queue action {action!r}")
        finally:
            operator.close()
