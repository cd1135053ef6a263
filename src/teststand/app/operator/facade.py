"""`Operator`: the environment, the queue, the lock, following items and reading their runs."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from teststand.app.operator.connection import idle
from teststand.app.operator.console import startup_error
from teststand.app.operator.errors import (
    EnvironmentClosed,
    EnvironmentOpenFailed,
    LockError,
    OperatorError,
)
from teststand.app.operator.following import Following
from teststand.app.operator.items import QueueItem, QueueStatus
from teststand.app.operator.results import Results

QUALIFICATION_PLAN = "module_qualification"


class Operator(Following, Results):
    """A client of the stand's RE Manager (0MQ) and of its Tiled storage."""

    def status(self, history: int = 5) -> QueueStatus:
        s = self._status()
        queue = self._call("read the queue", self._api.queue_get, reload=True)
        past = self._call("read the history", self._api.history_get, reload=True)["items"]
        locked = tuple(part for part in ("environment", "queue") if (s.get("lock") or {}).get(part))
        holder = ""
        if locked:
            info = self._call("read the lock", self._api.lock_info, reload=True)["lock_info"]
            note = f", note: {info['note']}" if info.get("note") else ""
            holder = f" by {info.get('user')} since {info.get('time_str')}{note}"
        running = queue.get("running_item") or {}
        return QueueStatus(
            manager_state=str(s["manager_state"]),
            environment_open=bool(s["worker_environment_exists"]),
            environment_state=str(s.get("worker_environment_state")),
            running=QueueItem.of(running) if running else None,
            queue=tuple(QueueItem.of(item) for item in queue["items"]),
            history=tuple(QueueItem.of(item) for item in past[-history:] if history),
            locked=locked,
            lock_holder=holder,
            progress=self.progress() if running else "",
        )

    # ---- environment ----
    def open_environment(self, timeout: float = 120.0) -> None:
        """Open the worker environment (runs the profile's startup code); nothing if open.

        `EnvironmentOpenFailed` carries the startup code's error, e.g. the stand file's
        ConfigError or an instrument's InstrumentBusy.
        """
        if self._status()["worker_environment_exists"]:
            return
        monitor = self._api.console_monitor if self.info else None
        if monitor is not None:
            monitor.enable()
        try:
            self._call("open the environment", self._api.environment_open)
            self._wait("open the environment", idle, timeout)
            if self._status()["worker_environment_exists"]:
                return
            message, error_type = self._startup_failure(monitor)
            raise EnvironmentOpenFailed(
                f"the RE environment did not open: {message}", error_type=error_type
            )
        finally:
            if monitor is not None:
                monitor.disable()

    def _startup_failure(self, monitor: Any) -> tuple[str, str | None]:
        if monitor is None:
            return "its startup code failed; see the RE Manager's log", None
        found = None
        deadline = time.monotonic() + 3.0
        while found is None and time.monotonic() < deadline:
            with contextlib.suppress(Exception):  # queue.Empty: no more output
                monitor.next_msg(timeout=0.2)
            found = startup_error(monitor.text())
        return found or ("its startup code failed; see the RE Manager's log", None)

    def close_environment(self, timeout: float = 60.0) -> None:
        """Close the worker environment (releases the instruments); nothing if closed."""
        if not self._status()["worker_environment_exists"]:
            return
        self._call("close the environment", self._api.environment_close)
        self._wait("close the environment", idle, timeout)
        if self._status()["worker_environment_exists"]:
            raise OperatorError("the RE environment did not close; see the RE Manager's log")

    def destroy_environment(self, timeout: float = 60.0) -> None:
        """Kill the worker (if it still runs) and forget its environment: for a worker that
        died (the RE Manager does not notice on its own) or hangs. Its running item goes to the
        history as failed; the queue stays. Open the environment again afterwards."""
        if not self._status()["worker_environment_exists"]:
            return
        self._call("destroy the environment", self._api.environment_destroy)
        self._wait("destroy the environment", idle, timeout)
        if self._status()["worker_environment_exists"]:
            raise OperatorError("the RE environment was not destroyed; see the RE Manager's log")

    # ---- queue ----
    def submit(self, plan: str, *args: Any, start: bool = True, **kwargs: Any) -> str:
        """Queue `plan(*args, **kwargs)` and (with `start`) start the queue if it is idle;
        returns the item uid.

        Checked before anything changes: the environment must be open to start, and the queue
        server refuses unknown plans, unknown or mistyped parameters and plans the user group may
        not run (`RequestRefused`). The plan checks its own arguments when it runs (a failed
        item, see `follow`).
        """
        from bluesky_queueserver_api import BPlan  # type: ignore[import-untyped]

        if start and not self._status()["worker_environment_exists"]:
            raise EnvironmentClosed(
                f"cannot run {plan}: the RE environment is closed; open it first "
                "(`teststand queue open`, Operator.open_environment())"
            )
        reply = self._call(f"queue {plan}", self._api.item_add, BPlan(plan, *args, **kwargs))
        uid = str(reply["item"]["item_uid"])
        if start and self._status()["manager_state"] == "idle":
            self.start()
        return uid

    def submit_qualification(self, slots: str | list[int], stage: str, **kwargs: Any) -> str:
        """Queue the module qualification of `slots` ("1-8", [1, 2]) at `stage`."""
        return self.submit(QUALIFICATION_PLAN, slots=slots, stage=stage, **kwargs)

    def start(self) -> None:
        """Start the queue; first takes off the front a copy of the last item if its arguments
        were refused or it was aborted (running it again cannot help)."""
        self.drop_refused_copy()
        self._call("start the queue", self._api.queue_start)

    def clear(self) -> tuple[QueueItem, ...]:
        """Remove every queued item (not the running one); returns what was removed."""
        queue = self._call("read the queue", self._api.queue_get, reload=True)["items"]
        self._call("clear the queue", self._api.queue_clear)
        return tuple(QueueItem.of(item) for item in queue)

    def remove(self, item_uid: str) -> str:
        """Take a queued item off the queue (any unique prefix of its uid); returns its uid."""
        item_uid = self.full_uid(item_uid)
        self._call(f"remove item {item_uid}", self._api.item_remove, uid=item_uid)
        return item_uid

    def pause(self, *, immediate: bool = False) -> None:
        """Pause the running plan at its next checkpoint (or at once with `immediate`)."""
        option = "immediate" if immediate else "deferred"
        self._call("pause the plan", self._api.re_pause, option)

    def resume(self) -> None:
        self._call("resume the plan", self._api.re_resume)

    def abort(self, timeout: float = 60.0) -> QueueItem | None:
        """Abort the paused plan (its cleanup brings HV to 0 V); pauses a running one first.

        Waits for the manager to be idle; the aborted item stays in the history and is taken
        off the queue (the queue server would put it back at the front). Returns it.
        """
        if self._status()["manager_state"] == "executing_queue":
            self.pause(immediate=True)
            self._wait("pause the plan", lambda s: s["manager_state"] != "executing_queue", 60.0)
        self._call("abort the plan", self._api.re_abort)
        self._wait("abort the plan", idle, timeout)
        history = self._call("read the history", self._api.history_get, reload=True)["items"]
        last = history[-1] if history else {}
        if (last.get("result") or {}).get("exit_status") != "aborted":
            return None
        self.drop_requeued(last)
        return QueueItem.of(last)

    def stop(self) -> None:
        """Stop the paused plan (a clean end: the item counts as done)."""
        self._call("stop the plan", self._api.re_stop)

    def execute(self, function: str, timeout: float = 60.0, **kwargs: Any) -> Any:
        """Run `function(**kwargs)` in the worker (an idle, open environment) and return what it
        returns; the user group must be allowed the function. Its exception is an
        `OperatorError` with the function's message."""
        from bluesky_queueserver_api import BFunc

        reply = self._call(f"run {function}", self._api.function_execute, BFunc(function, **kwargs))
        task = reply["task_uid"]
        try:
            self._api.wait_for_completed_task(task, timeout=timeout)
        except self._api.WaitTimeoutError:
            raise OperatorError(f"{function} did not end within {timeout:g} s") from None
        result = self._call(f"read the result of {function}", self._api.task_result, task)
        outcome = result.get("result") or {}
        if not outcome.get("success"):
            message = str(outcome.get("msg") or "no message").split(": ", 1)[-1]
            raise OperatorError(message)
        return outcome.get("return_value")

    # ---- lock ----
    def lock(self, key: str, *, note: str | None = None) -> None:
        """Lock the environment and the queue with `key` and send it with every request."""
        if not key or not key.strip():
            raise LockError("an empty lock key: give a non-empty key (keep it to unlock)")
        self._call(
            "lock the RE Manager",
            self._api.lock,
            key,
            environment=True,
            queue=True,
            note=note,
            user=self._api.user,
        )
        self.lock_key = key

    def unlock(self, key: str | None = None) -> None:
        """Unlock with `key` (default: the key this operator locked with)."""
        key = key or self.lock_key
        if not key:
            raise LockError("cannot unlock: give the lock key the RE Manager was locked with")
        self._call("unlock the RE Manager", self._api.unlock, key)
        self.lock_key = None
