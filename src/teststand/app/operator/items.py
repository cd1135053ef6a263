"""What the operator reads back: queue items, the queue's status, updates of a followed item,
and the stored runs of an item."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from teststand.storage.catalog import run_module_ids
from teststand.storage.frames import frame, read_labelled

SUCCESS = ("completed", "stopped")
#: Failed, aborted and halted items go back to the front of the queue (queueserver's rule).
REQUEUED = ("failed", "aborted", "halted")
#: Errors of a plan that refused its arguments before touching the hardware: running the item
#: again cannot succeed, so its copy is taken off the queue (see `Operator.follow`).
REFUSED_ARGUMENTS = ("PlanArgumentError", "BiasLimitError", "MetadataError")

ItemState = Literal["queued", "running", "paused", "finished"]


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
    #: The running plan's point, voltage, wait: `iv_scan · point 3/41 · 10 V · settling 8 s left`
    progress: str = ""

    def lines(self) -> list[str]:
        lock = f"locked ({', '.join(self.locked)}){self.lock_holder}" if self.locked else "no"
        out = [
            f"manager: {self.manager_state}; environment: "
            f"{'open' if self.environment_open else 'closed'} ({self.environment_state}); "
            f"lock: {lock}",
            f"running: {self.running.call() + '  ' + self.running.uid if self.running else '-'}",
            *([f"  now: {self.progress}"] if self.running and self.progress else []),
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
    #: The copy the queue server put back at the front of the queue was removed.
    removed: bool = False
    #: Set while queued when the queue has stopped: why (the last item's end), what to do.
    queue_stopped: str = ""
    #: While running: the plan's point, voltage and wait (no countdown: one update per phase).
    progress: str = ""

    @property
    def finished(self) -> bool:
        return self.state == "finished"

    @property
    def succeeded(self) -> bool:
        return self.exit_status in SUCCESS

    @property
    def requeued(self) -> bool:
        """True when the queue server put the item back at the front of the queue (and it is
        still there)."""
        return self.exit_status in REQUEUED and not self.removed

    def describe(self) -> str:
        what = f"{self.name} {self.item_uid[:8]}" if self.name else self.item_uid[:8]
        if self.state == "queued" and self.queue_stopped:
            return (
                f"{what}: still queued, position {self.position} of {self.queue_length}, but the "
                f"queue stopped: {self.queue_stopped}"
            )
        if self.state == "queued":
            return (
                f"{what}: queued, position {self.position} of {self.queue_length} "
                f"(manager {self.manager_state})"
            )
        runs = f"{self.runs_done} run(s) done" + (", 1 open" if self.runs_open else "")
        if self.state in ("running", "paused"):
            return f"{what}: {self.state}, {runs}" + (f": {self.progress}" if self.progress else "")
        text = f"{what}: {self.exit_status}, {len(self.run_uids)} run(s)"
        if self.message:
            text += f": {self.error_type + ': ' if self.error_type else ''}{self.message}"
        if self.removed:
            why = "aborted" if self.exit_status == "aborted" else "its arguments were refused"
            text += f" ({why}: taken off the queue, kept in the history)"
        elif self.requeued:
            text += (
                " (back at the front of the queue under a new uid: `teststand queue start` runs "
                "it again, `teststand queue remove UID` takes it off)"
            )
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
        """One stream as a pandas DataFrame (as `Catalog.pandas`: dates, named columns, units)."""
        return frame(read_labelled(self.run, stream))
