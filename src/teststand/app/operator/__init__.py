"""Drive the stand's queue server from scripts and the command line.

`Operator` is a typed facade over bluesky-queueserver-api (0MQ): submit plans and qualifications,
follow an item as a generator of `StatusUpdate`s, pause, resume and abort, open and close the
worker environment, lock the manager, and read an item's runs back from Tiled.

```python
with Operator.from_state_dir(state_dir, storage=load_stand("stand.yaml").storage) as op:
    op.open_environment()
    uid = op.submit_qualification("1-8", "INITIAL_WARM")
    for update in op.follow(uid):
        print(update.describe())
    for run in op.results(uid):
        print(run.test, run.verdict)
```

Every refusal of the manager is a typed error carrying its message: `RequestRefused` (unknown
plan, bad parameters, not permitted), `LockError` (locked, no or wrong key), `ManagerUnreachable`,
`RedisUnreachable` (the manager answers but its Redis does not), `EnvironmentOpenFailed` (the
startup code failed, e.g. a stand file with errors or instruments held by another program).
"""

from __future__ import annotations

import contextlib
import getpass
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from teststand.app.qserver import RedisAddress, RedisUnreachable, ping_redis, read_state
from teststand.errors import TeststandError
from teststand.storage.catalog import Catalog, RunNotFound, run_module_ids
from teststand.storage.config import StorageConfig

#: The queueserver user group of the stand's operators (user_group_permissions.yaml).
OPERATOR_GROUP = "operator"
QUALIFICATION_PLAN = "module_qualification"
SUCCESS = ("completed", "stopped")
#: Failed, aborted and halted items go back to the front of the queue (queueserver's rule).
REQUEUED = ("failed", "aborted", "halted")
_REDIS_TROUBLE = ("Error 111 connecting", "Connection closed by server", "Connection refused")
_LOG_RECORD = re.compile(r"^\[[A-Z] \d{4}-\d\d-\d\d ")
_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Busy|Refused|Unreachable)): ")

ItemState = Literal["queued", "running", "paused", "finished"]


class OperatorError(TeststandError):
    """A queue server request failed; the message says what to do."""


class ManagerUnreachable(OperatorError):
    """No RE Manager answers at the 0MQ address."""


class RequestRefused(OperatorError, ValueError):
    """The RE Manager refused a request (unknown plan, bad parameters, not permitted...)."""


class LockError(RequestRefused):
    """The RE Manager is locked and the request came without its lock key (or a wrong one)."""


class EnvironmentClosed(OperatorError):
    """The request needs the worker environment, which is closed."""


class EnvironmentOpenFailed(OperatorError):
    """The worker environment did not open: its startup code failed."""

    def __init__(self, message: str, *, error_type: str | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type


class ItemNotFound(OperatorError, KeyError):
    """No queue item with this uid in the queue, running, or in the history."""

    def __str__(self) -> str:
        return str(self.args[0])


class FollowTimeout(OperatorError, TimeoutError):
    """The followed item did not finish in time (it goes on)."""


@dataclass(frozen=True)
class QueueItem:
    """One plan of the queue or the history."""

    uid: str
    name: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    user: str = ""
    exit_status: str | None = None
    message: str = ""
    run_uids: tuple[str, ...] = ()

    @classmethod
    def of(cls, item: Mapping[str, Any]) -> QueueItem:
        result = item.get("result") or {}
        return cls(
            uid=str(item.get("item_uid", "")),
            name=str(item.get("name", "")),
            args=tuple(item.get("args") or ()),
            kwargs=dict(item.get("kwargs") or {}),
            user=str(item.get("user", "")),
            exit_status=result.get("exit_status"),
            message=str(result.get("msg") or ""),
            run_uids=tuple(result.get("run_uids") or ()),
        )

    def call(self) -> str:
        """The plan as a call: `iv_scan(slots='1-2', stop=20)`."""
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.name}({', '.join(parts)})"


@dataclass(frozen=True)
class QueueStatus:
    """The manager, its environment, its lock, the queue and the latest history."""

    manager_state: str
    environment_open: bool
    environment_state: str
    running: QueueItem | None
    queue: tuple[QueueItem, ...]
    history: tuple[QueueItem, ...]
    locked: tuple[str, ...]
    lock_holder: str = ""

    def lines(self) -> list[str]:
        lock = f"locked ({', '.join(self.locked)}){self.lock_holder}" if self.locked else "no"
        out = [
            f"manager: {self.manager_state}; environment: "
            f"{'open' if self.environment_open else 'closed'} ({self.environment_state}); "
            f"lock: {lock}",
            f"running: {self.running.call() + '  ' + self.running.uid if self.running else '-'}",
            f"queue ({len(self.queue)}):",
        ]
        out += [f"  {n}. {item.call()}  {item.uid}" for n, item in enumerate(self.queue, 1)]
        out.append(f"history (last {len(self.history)}):")
        for item in self.history:
            message = f": {item.message}" if item.message else ""
            out.append(f"  {item.exit_status:<9} {item.call()}  {item.uid}{message}")
        return out


@dataclass(frozen=True)
class StatusUpdate:
    """Where a followed item stands. The last update of `follow` has `finished` set."""

    item_uid: str
    state: ItemState
    manager_state: str
    queue_length: int
    #: Place in the queue (1 = next) while queued.
    position: int | None = None
    #: Runs of the item: closed and still open (the progress the queue server knows).
    runs_done: int = 0
    runs_open: int = 0
    exit_status: str | None = None
    message: str = ""
    #: The exception's class name for a failed item, e.g. "PlanArgumentError".
    error_type: str | None = None
    run_uids: tuple[str, ...] = ()
    name: str = ""

    @property
    def finished(self) -> bool:
        return self.state == "finished"

    @property
    def succeeded(self) -> bool:
        return self.exit_status in SUCCESS

    @property
    def requeued(self) -> bool:
        """True when the queue server put the item back at the front of the queue."""
        return self.exit_status in REQUEUED

    def describe(self) -> str:
        what = f"{self.name} {self.item_uid[:8]}" if self.name else self.item_uid[:8]
        if self.state == "queued":
            return (
                f"{what}: queued, position {self.position} of {self.queue_length} "
                f"(manager {self.manager_state})"
            )
        runs = f"{self.runs_done} run(s) done" + (", 1 open" if self.runs_open else "")
        if self.state in ("running", "paused"):
            return f"{what}: {self.state}, {runs}"
        text = f"{what}: {self.exit_status}, {len(self.run_uids)} run(s)"
        if self.message:
            text += f": {self.error_type + ': ' if self.error_type else ''}{self.message}"
        if self.requeued:
            text += " (back at the front of the queue: `teststand queue clear` removes it)"
        return text


@dataclass(frozen=True)
class RunResult:
    """One run of an item, as stored in Tiled, with the live analysis where there is one."""

    uid: str
    test: str | None
    stage: str | None
    module_ids: tuple[str, ...]
    exit_status: str | None
    verdict: str | None
    analysis: Mapping[str, Any] | None
    run: Any = field(repr=False)

    @classmethod
    def of(cls, uid: str, run: Any) -> RunResult:
        metadata = run.metadata
        start, stop = metadata.get("start") or {}, metadata.get("stop") or {}
        return cls(
            uid=uid,
            test=start.get("test"),
            stage=start.get("stage"),
            module_ids=tuple(run_module_ids(dict(start))),
            exit_status=stop.get("exit_status"),
            verdict=metadata.get("verdict"),
            analysis=metadata.get("analysis"),
            run=run,
        )

    def table(self, stream: str = "primary") -> Any:
        """One stream as a pandas DataFrame."""
        return self.run[stream].read().to_dataframe()


def _client(control: str, info: str | None, timeout: float) -> Any:
    from bluesky_queueserver_api.zmq import REManagerAPI  # type: ignore[import-untyped]

    return REManagerAPI(
        zmq_control_addr=control,
        zmq_info_addr=info,
        timeout_recv=timeout,
        timeout_send=timeout,
        status_expiration_period=0.1,
        status_polling_period=0.2,
    )


def startup_error(console: str) -> tuple[str, str | None] | None:
    """(message, exception class name) of a failed environment start in the manager's console
    output: the text after "Error while executing script", or the traceback's last line."""
    lines = console.splitlines()
    error_type = None
    for line in lines:
        if found := _EXCEPTION_LINE.match(line):
            error_type = found.group(1).rsplit(".", 1)[-1]
    for n in range(len(lines) - 1, -1, -1):
        if lines[n].startswith("Error while executing script"):
            text = [lines[n].split(": ", 1)[-1]]
            for line in lines[n + 1 :]:
                if _LOG_RECORD.match(line):
                    break
                text.append(line)
            script = lines[n].split("'")[1] if "'" in lines[n] else ""
            where = f"{Path(script).name}: " if script else ""
            return where + "\n".join(text).strip(), error_type
    for line in reversed(lines):
        if _EXCEPTION_LINE.match(line):
            return line.split(": ", 1)[1], error_type
    return None


class Operator:
    """A client of the stand's RE Manager (0MQ) and of its Tiled storage."""

    def __init__(
        self,
        control: str = "tcp://127.0.0.1:60615",
        info: str | None = None,
        *,
        redis: str | None = None,
        storage: StorageConfig | None = None,
        catalog: Catalog | None = None,
        user: str | None = None,
        user_group: str = OPERATOR_GROUP,
        lock_key: str | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.control = control
        self.info = info
        self.redis = RedisAddress.parse(redis) if redis else None
        self.storage = storage
        self._catalog = catalog
        self._stack = contextlib.ExitStack()
        self._api = _client(control, info, timeout)
        self._api.user = user or getpass.getuser()
        self._api.user_group = user_group
        self.lock_key = lock_key

    @classmethod
    def from_state_dir(cls, state_dir: Path, **options: Any) -> Operator:
        """The operator of the queue server that `teststand qserver start` recorded there."""
        components = {c.name: c for c in read_state(state_dir)}
        manager = components.get("manager")
        if manager is None or not manager.alive:
            raise ManagerUnreachable(
                f"the queue server of {state_dir} is not running: start it with `teststand "
                "qserver start` (`teststand qserver status` shows what runs)"
            )
        control, info = manager.address.split()
        redis = components.get("redis")
        operator = cls(control, info, redis=redis.address if redis else None, **options)
        operator.check_redis()
        return operator

    # ---- plumbing ----
    def close(self) -> None:
        self._stack.close()
        self._api.close()

    def __enter__(self) -> Operator:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def lock_key(self) -> str | None:
        key: str | None = self._api.lock_key
        return key

    @lock_key.setter
    def lock_key(self, key: str | None) -> None:
        """The key sent with every request (None: none)."""
        if key is not None and not key.strip():
            raise LockError("an empty lock key: give the key the manager was locked with")
        if key:
            self._api.lock_key = key
            self._api.enable_locked_api = True
        elif self._api.lock_key:
            self._api.lock_key = None  # also stops sending it

    def check_redis(self) -> None:
        """`RedisUnreachable` unless the manager's Redis (when known) answers."""
        if self.redis is None:
            return
        try:
            ping_redis(self.redis, timeout=2.0)
        except RedisUnreachable as exc:
            raise RedisUnreachable(
                f"the queue server's Redis at {self.redis.url} is not reachable: the RE Manager "
                f"keeps its queue and history there ({exc}). Restart the queue server "
                "(`teststand qserver stop --force`, then `teststand qserver start`)"
            ) from None

    def _call(self, doing: str, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        from bluesky_queueserver_api.comm_base import (  # type: ignore[import-untyped]
            RequestFailedError,
            RequestTimeoutError,
        )

        try:
            return method(*args, **kwargs)
        except RequestTimeoutError:
            self.check_redis()
            raise ManagerUnreachable(
                f"cannot {doing}: no RE Manager answers at {self.control}; start it with "
                "`teststand qserver start` (`teststand qserver status` shows what runs)"
            ) from None
        except RequestFailedError as exc:
            raise self._refused(doing, exc) from None

    def _refused(self, doing: str, exc: Any) -> TeststandError:
        response = exc.response if isinstance(exc.response, Mapping) else {}
        message = str(response.get("msg") or exc).strip()
        if "Invalid lock key" in message:
            holder = message.split("Invalid lock key:", 1)[1].strip().splitlines()
            detail = f" ({'; '.join(line.strip() for line in holder[:1] + holder[-1:])})"
            given = "a wrong lock key" if self.lock_key else "no lock key"
            return LockError(
                f"cannot {doing}: the RE Manager is locked{detail} and this request came with "
                f"{given}; give the key it was locked with (Operator(lock_key=...), "
                "--lock-key or TESTSTAND_LOCK_KEY), or ask the holder to unlock it"
            )
        if any(sign in message for sign in _REDIS_TROUBLE):
            self.check_redis()
            return RedisUnreachable(
                f"cannot {doing}: the RE Manager cannot reach its Redis ({message}); restart "
                "the queue server (`teststand qserver stop --force`, then `start`)"
            )
        if "not in the list of allowed plans" in message:
            allowed = ", ".join(sorted(self.plans_allowed())) or "none"
            message = (
                f"{message.splitlines()[0]} Plans the group '{self._api.user_group}' may queue: "
                f"{allowed}"
            )
        return RequestRefused(f"cannot {doing}: {message}")

    def _status(self) -> dict[str, Any]:
        status: dict[str, Any] = self._call("read the status", self._api.status, reload=True)
        return status

    # ---- status ----
    def plans_allowed(self) -> list[str]:
        """The plans this operator's user group may queue."""
        reply = self._call("list the allowed plans", self._api.plans_allowed, reload=True)
        return sorted(reply.get("plans_allowed") or {})

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
            self._wait("open the environment", _idle, timeout)
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
        self._wait("close the environment", _idle, timeout)
        if self._status()["worker_environment_exists"]:
            raise OperatorError("the RE environment did not close; see the RE Manager's log")

    def _wait(
        self, doing: str, condition: Callable[[dict[str, Any]], bool], timeout: float
    ) -> None:
        try:
            self._call(doing, self._api.wait_for_condition, condition, timeout=timeout)
        except self._api.WaitTimeoutError:
            raise OperatorError(f"could not {doing} within {timeout:g} s") from None

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
        self._call("start the queue", self._api.queue_start)

    def clear(self) -> None:
        """Remove every queued item (not the running one)."""
        self._call("clear the queue", self._api.queue_clear)

    def remove(self, item_uid: str) -> None:
        self._call(f"remove item {item_uid}", self._api.item_remove, uid=item_uid)

    def pause(self, *, immediate: bool = False) -> None:
        """Pause the running plan at its next checkpoint (or at once with `immediate`)."""
        option = "immediate" if immediate else "deferred"
        self._call("pause the plan", self._api.re_pause, option)

    def resume(self) -> None:
        self._call("resume the plan", self._api.re_resume)

    def abort(self) -> None:
        """Abort the paused plan (its cleanup brings HV to 0 V); pauses a running one first."""
        if self._status()["manager_state"] == "executing_queue":
            self.pause(immediate=True)
            self._wait("pause the plan", lambda s: s["manager_state"] != "executing_queue", 60.0)
        self._call("abort the plan", self._api.re_abort)

    def stop(self) -> None:
        """Stop the paused plan (a clean end: the item counts as done)."""
        self._call("stop the plan", self._api.re_stop)

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

    # ---- following ----
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

    # ---- results ----
    @property
    def catalog(self) -> Catalog:
        """The stand's runs in Tiled (its server, or the embedded one, started if needed)."""
        if self._catalog is None:
            if self.storage is None:
                raise OperatorError(
                    "no storage settings: give Operator(storage=load_stand(FILE).storage) or "
                    "catalog=Catalog(...) to read results"
                )
            from teststand.storage.session import storage_client

            self._catalog = Catalog(self._stack.enter_context(storage_client(self.storage)))
        return self._catalog

    def results(self, uid: str, *, wait: float = 30.0) -> list[RunResult]:
        """The runs of queue item `uid` (found by the run uids in its history entry), or the run
        `uid` itself, from Tiled. Waits up to `wait` s for each run to be stored complete (its
        stop document; for an IV run, its analysis)."""
        history = self._call("read the history", self._api.history_get, reload=True)["items"]
        items = {str(i["item_uid"]): i for i in history}
        if uid not in items:
            return [self._stored(uid, wait, known=False)]
        run_uids = (items[uid].get("result") or {}).get("run_uids") or ()
        return [self._stored(str(run_uid), wait) for run_uid in run_uids]

    def _stored(self, uid: str, wait: float, known: bool = True) -> RunResult:
        deadline = time.monotonic() + wait
        while True:
            try:
                result = RunResult.of(uid, self.catalog.run(uid))
            except RunNotFound:
                if not known:
                    raise RunNotFound(
                        f"{uid} is neither a queue item in the history nor a run in Tiled; "
                        "`teststand queue status` lists the latest items"
                    ) from None
                if time.monotonic() > deadline:
                    raise RunNotFound(
                        f"run {uid} is not in Tiled after {wait:g} s: it may still be in the "
                        "worker's journal (replayed when Tiled answers; `teststand storage "
                        "replay`)"
                    ) from None
            else:
                complete = result.exit_status is not None and (
                    result.test != "iv" or result.analysis is not None
                )
                if complete or time.monotonic() > deadline:
                    return result
            time.sleep(0.2)  # Tiled has no notifications: poll the server


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


def _idle(status: dict[str, Any]) -> bool:
    return bool(status["manager_state"] == "idle")


def _finished(item: Mapping[str, Any], base: StatusUpdate) -> StatusUpdate:
    result = item.get("result") or {}
    error_type = None
    for line in reversed(str(result.get("traceback") or "").strip().splitlines()):
        if found := _EXCEPTION_LINE.match(line):
            error_type = found.group(1).rsplit(".", 1)[-1]
            break
    message = str(result.get("msg") or "")
    message = message.removeprefix("Plan failed: ")
    return replace(
        base,
        state="finished",
        exit_status=str(result.get("exit_status")),
        message=message,
        error_type=error_type,
        run_uids=tuple(str(u) for u in result.get("run_uids") or ()),
        name=str(item.get("name", "")),
    )
