"""Following a queue item: `Following.follow` yields a `StatusUpdate` whenever something changes."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from teststand.app.operator.connection import ManagerConnection
from teststand.app.operator.console import error_type
from teststand.app.operator.errors import FollowTimeout, ItemNotFound
from teststand.app.operator.items import StatusUpdate


class Following(ManagerConnection):
    def follow(
        self, item_uid: str, *, timeout: float | None = None, poll: float = 1.0
    ) -> Iterator[StatusUpdate]:
        """Updates of a queued or running item whenever something changes; the last one, when
        the item has finished, carries its exit status, message and run uids from the history.

        Raises `ItemNotFound` for an unknown uid and `FollowTimeout` after `timeout` s.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        last: StatusUpdate | None = None
        cache = _Cache()
        while True:
            status = self._status()
            update = self._update(item_uid, status, cache)
            if update is None:  # between the queue and running: look again once
                update = self._update(item_uid, self._status(), cache, refresh=True)
            if update is None:
                raise ItemNotFound(
                    f"no item {item_uid} in the queue, running or in the history; "
                    "`teststand queue status` lists them"
                )
            if update != last:
                yield update
                last = update
            if update.finished:
                return
            if deadline is not None and time.monotonic() > deadline:
                raise FollowTimeout(f"item {item_uid} did not finish within {timeout:g} s")
            with contextlib.suppress(self._api.WaitTimeoutError):
                self._call(
                    "follow the item",
                    self._api.wait_for_condition,
                    partial(_changed, status["status_uid"]),
                    timeout=poll,
                )

    def _update(
        self, uid: str, status: dict[str, Any], cache: _Cache, refresh: bool = False
    ) -> StatusUpdate | None:
        base = StatusUpdate(
            item_uid=uid,
            state="queued",
            manager_state=str(status["manager_state"]),
            queue_length=int(status["items_in_queue"]),
        )
        if status.get("running_item_uid") == uid:
            if uid not in cache.names:
                self._read_queue(status, cache)
            if refresh or cache.runs_uid != status["run_list_uid"]:
                runs = self._call("list the runs", self._api.re_runs, reload=True)["run_list"]
                cache.runs = (
                    sum(1 for r in runs if not r["is_open"]),
                    sum(1 for r in runs if r["is_open"]),
                )
                cache.runs_uid = status["run_list_uid"]
            paused = status["manager_state"] == "paused"
            return replace(
                base,
                state="paused" if paused else "running",
                runs_done=cache.runs[0],
                runs_open=cache.runs[1],
                name=cache.names.get(uid, ""),
            )
        if refresh or cache.history_uid != status["plan_history_uid"]:
            items = self._call("read the history", self._api.history_get, reload=True)["items"]
            cache.history = {str(i["item_uid"]): i for i in items}
            cache.history_uid = status["plan_history_uid"]
        if uid in cache.history:
            return _finished(cache.history[uid], base)
        if refresh or cache.queue_uid != status["plan_queue_uid"]:
            self._read_queue(status, cache)
        if uid in cache.queue:
            return replace(base, position=cache.queue.index(uid) + 1, name=cache.names.get(uid, ""))
        return None

    def _read_queue(self, status: dict[str, Any], cache: _Cache) -> None:
        queue = self._call("read the queue", self._api.queue_get, reload=True)
        running = queue.get("running_item") or {}
        items = [*queue["items"], running] if running else queue["items"]
        cache.queue = [str(i["item_uid"]) for i in queue["items"]]
        cache.names.update({str(i["item_uid"]): str(i["name"]) for i in items})
        cache.queue_uid = status["plan_queue_uid"]

    def wait(self, item_uid: str, *, timeout: float | None = None) -> StatusUpdate:
        """Follow the item to its end and return the last update."""
        *_, last = self.follow(item_uid, timeout=timeout)
        return last


@dataclass
class _Cache:
    history_uid: str = ""
    history: dict[str, Any] = field(default_factory=dict)
    queue_uid: str = ""
    queue: list[str] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)
    runs_uid: str = ""
    runs: tuple[int, int] = (0, 0)


def _changed(status_uid: str, status: dict[str, Any]) -> bool:
    return bool(status["status_uid"] != status_uid)


def _finished(item: Mapping[str, Any], base: StatusUpdate) -> StatusUpdate:
    result = item.get("result") or {}
    message = str(result.get("msg") or "")
    message = message.removeprefix("Plan failed: ")
    return replace(
        base,
        state="finished",
        exit_status=str(result.get("exit_status")),
        message=message,
        error_type=error_type(str(result.get("traceback") or "")),
        run_uids=tuple(str(u) for u in result.get("run_uids") or ()),
        name=str(item.get("name", "")),
    )
