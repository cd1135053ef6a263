"""The page's state in one place: keyed JSON values, pushed to every connected page as deltas.

Sources (the CA watcher, the queue watcher, the control lease) call `set(key, value)`; a value
equal to the last is dropped. Each page has its own pending changes: its sender takes them all
at once (at most every `period` s), so a slow page gets the latest values merged, never a
backlog, and never loses the last value of a key.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any


class PageFeed:
    """The changes one page has not been sent yet."""

    def __init__(self) -> None:
        self.pending: dict[str, Any] = {}
        self.changed = asyncio.Event()

    def take(self) -> str:
        pending, self.pending = self.pending, {}
        self.changed.clear()
        return json.dumps({"type": "update", "values": pending, "time": time.time()})


class Hub:
    def __init__(self, period: float = 0.02) -> None:
        self.period = period
        self.values: dict[str, Any] = {}
        self._feeds: set[PageFeed] = set()

    def set(self, key: str, value: Any) -> None:
        if self.values.get(key, ...) == value:
            return
        self.values[key] = value
        for feed in self._feeds:
            feed.pending[key] = value
            feed.changed.set()

    def snapshot(self) -> str:
        return json.dumps({"type": "snapshot", "values": self.values, "time": time.time()})

    def subscribe(self) -> PageFeed:
        feed = PageFeed()
        self._feeds.add(feed)
        return feed

    def unsubscribe(self, feed: PageFeed) -> None:
        self._feeds.discard(feed)

    @property
    def pages(self) -> int:
        return len(self._feeds)
