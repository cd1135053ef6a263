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
from teststand.app.operator.items import REFUSED_ARGUMENTS, StatusUpdate


class Following(ManagerConnection):
    def follow(
        self, item_uid: str, *, timeout: float | None = None, poll: float = 1.0
    ) -> Iterator[StatusUpdate]:
        """Updates of a queued or running item whenever something changes; the last one, when
        the item has finished, carries its exit status, message and run uids from the history.

        Raises `ItemNotFound` for an unknown uid and `FollowTimeout` after `timeout` s.
        """
        item_uid = self.full_uid(item_uid)
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
            if update.state == "queued" and update.manager_state == "idle":
                update = replace(update, queue_stopped=self._why_stopped())
            if update != last:
                yield update
                last = update
            if update.finished or update.queue_stopped:
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
                progress=self.progress(countdown=False),
            )
        if refresh or cache.history_uid != status["plan_history_uid"]:
            items = self._call("read the history", self._api.history_get, reload=True)["items"]
            cache.history = {str(i["item_uid"]): i for i in items}
            cache.last_finished = str(items[-1]["item_uid"]) if items else ""
            cache.history_uid = status["plan_history_uid"]
        if uid in cache.history:
            update = _finished(cache.history[uid], base)
            refused = update.error_type in REFUSED_ARGUMENTS or update.exit_status == "aborted"
            if update.requeued and refused and uid == cache.last_finished:
                self.drop_requeued(cache.history[uid])  # unless `abort` or `start` did
                update = replace(update, removed=True)
            return update
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

    def drop_requeued(self, finished: Mapping[str, Any]) -> bool:
        """Take the copy of a finished item that the queue server put back at the front of the
        queue off it (True), if it is there."""
        queue = self._call("read the queue", self._api.queue_get, reload=True)["items"]
        if not queue or not _same_plan(queue[0], finished):
            return False
        self._call("remove the re-queued item", self._api.item_remove, uid=queue[0]["item_uid"])
        return True

    def _why_stopped(self) -> str:
        """Why an idle manager leaves items queued (after a short look: a queue that is being
        started is idle for a moment), with what to do; "" if it started meanwhile."""
        with contextlib.suppress(self._api.WaitTimeoutError):
            self._call("follow the item", self._api.wait_for_condition, _busy, timeout=1.0)
            return ""
        start = "`teststand queue start` runs the queue"
        last = self.drop_refused_copy()
        if last is None:
            return f"it was not started; {start}"
        if last.succeeded:
            return f"it was not started after the last item; {start}"
        return f"{last.describe()}; {start} again"

    def drop_refused_copy(self) -> StatusUpdate | None:
        """The last finished item (None: none). If its arguments were refused or it was
        aborted, its copy at the front of the queue is taken off (`removed` says so)."""
        items = self._call("read the history", self._api.history_get, reload=True)["items"]
        if not items:
            return None
        last = items[-1]
        update = _finished(last, StatusUpdate(str(last["item_uid"]), "finished", "idle", 0))
        refused = update.error_type in REFUSED_ARGUMENTS or update.exit_status == "aborted"
        if update.requeued and refused:
            self.drop_requeued(last)
            update = replace(update, removed=True)
        return update

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
    last_finished: str = ""


def _changed(status_uid: str, status: dict[str, Any]) -> bool:
    return bool(status["status_uid"] != status_uid)


def _busy(status: dict[str, Any]) -> bool:
    return bool(status["manager_state"] != "idle")


def _same_plan(one: Mapping[str, Any], other: Mapping[str, Any]) -> bool:
    keys = ("name", "args", "kwargs")
    return all((one.get(k) or None) == (other.get(k) or None) for k in keys)


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
