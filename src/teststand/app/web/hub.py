"""The page's state in one place: keyed JSON values, pushed to every connected page as deltas.

Sources (the CA watcher, the queue watcher, the control lease) call `set(key, value)`; a value
equal to the last is dropped. Every `period` s the changed keys go to each page's queue as one
message; a page that cannot keep up (its queue full) is dropped and reconnects (its script does).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

PAGE_QUEUE = 64


class Hub:
    def __init__(self, period: float = 0.05) -> None:
        self.period = period
        self.values: dict[str, Any] = {}
        self._pending: dict[str, Any] = {}
        self._clients: set[asyncio.Queue[str | None]] = set()
        self._wake = asyncio.Event()

    def set(self, key: str, value: Any) -> None:
        if self.values.get(key, ...) == value:
            return
        self.values[key] = value
        self._pending[key] = value
        self._wake.set()

    def snapshot(self) -> str:
        return json.dumps({"type": "snapshot", "values": self.values, "time": time.time()})

    def subscribe(self) -> asyncio.Queue[str | None]:
        queue: asyncio.Queue[str | None] = asyncio.Queue(PAGE_QUEUE)
        self._clients.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[str | None]) -> None:
        self._clients.discard(queue)

    @property
    def pages(self) -> int:
        return len(self._clients)

    async def run(self) -> None:
        """Push the changed values to every page, at most once per `period`."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(self.period)
            pending, self._pending = self._pending, {}
            if not pending:
                continue
            message = json.dumps({"type": "update", "values": pending, "time": time.time()})
            for queue in list(self._clients):
                try:
                    queue.put_nowait(message)
                except asyncio.QueueFull:  # a page that cannot keep up: it reconnects
                    self._clients.discard(queue)
                    queue.get_nowait()
                    queue.put_nowait(None)
