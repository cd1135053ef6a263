"""The connection to the RE Manager (bluesky-queueserver-api over 0MQ): every request goes
through `_call`, which turns the manager's refusals into typed errors."""

from __future__ import annotations

import contextlib
import getpass
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from teststand.app.operator.errors import (
    LockError,
    ManagerUnreachable,
    OperatorError,
    RequestRefused,
)
from teststand.app.qserver import (
    OPERATOR_GROUP,
    PROGRESS_FILE,
    RedisAddress,
    RedisUnreachable,
    ping_redis,
    read_state,
)
from teststand.callbacks.progress import read_progress
from teststand.errors import TeststandError
from teststand.storage.catalog import Catalog
from teststand.storage.config import StorageConfig

_REDIS_TROUBLE = ("Error 111 connecting", "Connection closed by server", "Connection refused")


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


def idle(status: dict[str, Any]) -> bool:
    return bool(status["manager_state"] == "idle")


class ManagerConnection:
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
        #: The worker's progress file (`teststand.callbacks.progress`), set by `from_state_dir`.
        self.progress_file: Path | None = None

    @classmethod
    def from_state_dir(cls, state_dir: Path, **options: Any) -> Self:
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
        operator.progress_file = state_dir / PROGRESS_FILE
        return operator

    def progress(self, *, countdown: bool = True) -> str:
        """The worker's progress line (its point, voltage, wait), "" when it wrote none."""
        if self.progress_file is None:
            return ""
        return read_progress(self.progress_file).line(countdown=countdown)

    # ---- plumbing ----
    def close(self) -> None:
        self._stack.close()
        self._api.close()

    def __enter__(self) -> Self:
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

    def _wait(
        self, doing: str, condition: Callable[[dict[str, Any]], bool], timeout: float
    ) -> None:
        try:
            self._call(doing, self._api.wait_for_condition, condition, timeout=timeout)
        except self._api.WaitTimeoutError:
            raise OperatorError(f"could not {doing} within {timeout:g} s") from None

    def full_uid(self, prefix: str) -> str:
        """The uid of the queued, running or finished item that `prefix` starts (the 8 digits
        the commands print are enough); `prefix` itself when no item matches."""
        queue = self._call("read the queue", self._api.queue_get, reload=True)
        history = self._call("read the history", self._api.history_get, reload=True)["items"]
        running = [queue["running_item"]] if queue.get("running_item") else []
        uids = {str(i["item_uid"]) for i in [*queue["items"], *running, *history]}
        found = sorted(uid for uid in uids if uid.startswith(prefix))
        if len(found) > 1:
            raise RequestRefused(
                f"{prefix!r} starts {len(found)} items ({', '.join(found[:4])}): give more of "
                "the uid"
            )
        return found[0] if found else prefix
