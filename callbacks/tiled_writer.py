"""The live storage writer: a RunEngine subscriber that puts runs into Tiled as they go on.

On the RunEngine's thread a document is only appended to its run's journal and queued (tens of
microseconds). A background thread feeds the queue into bluesky-tiled-plugins' run writer and
flushes the batched events every `flush_interval`, so events show up in Tiled within about that
time. If Tiled is down, slow or refuses a write, the run goes on: its journal is replayed in the
background once Tiled answers (and by `teststand storage replay`). A journal is deleted only
after its run is verified complete in Tiled.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from teststand.callbacks.journal import RunJournal
from teststand.errors import TeststandError
from teststand.storage.annotations import apply_annotations, save_annotation
from teststand.storage.config import StorageConfig
from teststand.storage.embedded import EmbeddedServer
from teststand.storage.errors import StorageError
from teststand.storage.journal import JournalFile
from teststand.storage.replay import replay_directory
from teststand.storage.runwriter import RunTally, RunWriter, stored_problems

log = logging.getLogger("teststand.callbacks.tiled_writer")
ClientSource = Callable[[], Any]


@dataclass
class _LiveRun:
    uid: str
    writer: RunWriter | None = None
    tally: RunTally = field(default_factory=RunTally)
    journal: JournalFile | None = None
    pending: int = 0
    failed: str = ""
    annotated: bool = False


@dataclass
class _Marker:
    done: threading.Event = field(default_factory=threading.Event)


_STOP = object()


class LiveTiledWriter:
    """Subscribe to a RunEngine: `RE.subscribe(LiveTiledWriter(source, journal_dir))`.

    `source()` returns a `tiled.client` container (it may block or raise a typed error; it is
    only called from the background thread). Call `close()` at the end (or use `with`).
    """

    def __init__(
        self,
        source: ClientSource,
        journal_dir: Path,
        *,
        flush_interval: float = 0.2,
        replay_interval: float = 10.0,
        max_batch: int = 1000,
        max_backlog: int = 100_000,
        min_free_bytes: int = 500_000_000,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.journal_dir = journal_dir
        self.flush_interval = flush_interval
        self.replay_interval = replay_interval
        self.max_batch = max_batch
        self.max_backlog = max_backlog
        self.last_error: TeststandError | None = None
        self._source = source
        self._client: Any = None
        self._journal = RunJournal(journal_dir, min_free_bytes)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._runs: dict[str, _LiveRun] = {}
        self._last_flush = time.monotonic()
        self._next_replay = time.monotonic()
        self._on_close = on_close
        self._closed = False
        #: The embedded Tiled server this writer started (None: a server of the stand file).
        self.embedded: EmbeddedServer | None = None
        self._thread = threading.Thread(target=self._loop, name="tiled-writer", daemon=True)
        self._thread.start()

    # ---- RunEngine thread ----
    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        try:
            run = self._journal.append(name, doc)
        except TeststandError as exc:  # no journal: Tiled still gets the run
            log.error("%s", exc)
            self.last_error = exc
            run = self._journal.run_of(name, doc)
        if name == "stop":
            self._queue.put(("journal", run, self._journal.detach(run)))
        self._queue.put((name, run, doc))

    def annotate(self, uid: str, metadata: dict[str, Any]) -> None:
        """Merge `metadata` into run `uid`'s top-level metadata in Tiled once the run is stored
        there (kept on disk beside the journals until then, and replayed like them)."""
        try:
            save_annotation(self.journal_dir, uid, metadata)
        except (OSError, ValueError) as exc:
            log.error("run %s: cannot keep its annotation on disk (%s); it is lost", uid, exc)
            return
        self._queue.put(("annotate", uid, None))

    def wait(self, timeout: float = 60.0) -> bool:
        """Block until everything queued so far is handled and flushed; False on timeout."""
        marker = _Marker()
        self._queue.put(marker)
        return marker.done.wait(timeout)

    def close(self, timeout: float = 60.0) -> None:
        """Flush, finish, release the journals (unfinished runs stay journaled), stop."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join(timeout)
        for journal in self._journal.open_files():
            journal.close()
        if self._on_close is not None:
            self._on_close()

    def __enter__(self) -> LiveTiledWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- background thread ----
    def _loop(self) -> None:
        stopping = False
        while not stopping:
            due = self._last_flush + self.flush_interval
            wait = due if any(r.pending for r in self._runs.values()) else self._next_replay
            try:
                items = [self._queue.get(timeout=max(0.0, wait - time.monotonic()))]
            except queue.Empty:
                items = []
            while items and len(items) < self.max_batch:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            markers = []
            for item in items:
                if item is _STOP:
                    stopping = True
                elif isinstance(item, _Marker):
                    markers.append(item)
                else:
                    self._handle(*item)
            if stopping or markers or time.monotonic() >= due:
                self._flush()
            for marker in markers:
                marker.done.set()
            if not stopping and time.monotonic() >= self._next_replay and self._queue.empty():
                self._replay()

    def _connect(self) -> Any:
        if self._client is None:
            self._client = self._source()
        return self._client

    def _fail(self, run: _LiveRun, problem: str) -> None:
        if not run.failed:
            log.warning(
                "run %s: %s; it goes on in the journal %s and is replayed when Tiled answers",
                run.uid,
                problem,
                self.journal_dir,
            )
        run.failed = problem
        run.writer = None
        self._client = None

    def _handle(self, name: str, uid: str, doc: Any) -> None:
        if name == "annotate":
            if uid in self._runs:
                self._runs[uid].annotated = True
            else:
                self._store_annotation(uid)
            return
        if name == "journal":
            if uid in self._runs:
                self._runs[uid].journal = doc
            elif doc is not None:
                doc.close()
            return
        run = self._runs.get(uid)
        if run is None:
            if name != "start":
                return
            run = self._runs[uid] = _LiveRun(uid)
            try:
                run.writer = RunWriter(self._connect())
            except TeststandError as exc:
                self.last_error = exc
                self._fail(run, str(exc))
            except Exception as exc:
                self._fail(run, f"cannot reach Tiled ({type(exc).__name__}: {exc})")
        run.tally(name, doc)
        if run.writer is not None and self._queue.qsize() > self.max_backlog:
            self._fail(run, f"Tiled is too slow ({self._queue.qsize()} documents behind)")
        if run.writer is not None:
            try:
                run.writer(name, doc)
                run.pending += name in {"event", "event_page", "stream_datum"}
            except Exception as exc:
                self._fail(run, f"Tiled refused a {name} document ({type(exc).__name__}: {exc})")
        if name == "stop":
            self._finish(run)

    def _flush(self) -> None:
        self._last_flush = time.monotonic()
        for run in list(self._runs.values()):
            if run.writer is not None and run.pending:
                try:
                    run.writer.flush()
                except Exception as exc:
                    self._fail(run, f"writing events failed ({type(exc).__name__}: {exc})")
                run.pending = 0
        for journal in self._journal.open_files():
            journal.sync()

    def _finish(self, run: _LiveRun) -> None:
        del self._runs[run.uid]
        if run.journal is not None:
            run.journal.close()
        if run.writer is None:
            self._next_replay = min(self._next_replay, time.monotonic() + self.replay_interval)
            return
        try:
            problems = stored_problems(self._connect(), run.uid, run.tally)
        except Exception as exc:
            problems = [f"cannot verify ({type(exc).__name__}: {exc})"]
        if problems:
            self._fail(run, "; ".join(problems))
            return
        if run.journal is not None:
            run.journal.path.unlink(missing_ok=True)
        if run.annotated:
            self._store_annotation(run.uid)

    def _store_annotation(self, uid: str) -> None:
        try:
            apply_annotations(self._connect(), self.journal_dir, [uid])
        except Exception as exc:  # kept on disk for the next replay
            log.warning("run %s: storing its annotation failed: %s", uid, exc)
            self._client = None

    def _replay(self) -> None:
        self._next_replay = time.monotonic() + self.replay_interval
        try:
            replay_directory(self._connect(), self.journal_dir)
        except TeststandError as exc:
            self.last_error = exc
            self._client = None
        except Exception as exc:
            log.warning("background replay failed: %s: %s", type(exc).__name__, exc)
            self._client = None


def storage_writer(config: StorageConfig, **options: Any) -> LiveTiledWriter:
    """The writer for a stand's `storage:` settings; starts the embedded server if no URI."""
    from teststand.storage.client import connect

    journal = config.journal_path
    common: dict[str, Any] = {
        "flush_interval": config.flush_interval,
        "replay_interval": config.replay_interval,
        "min_free_bytes": int(config.min_free_mb * 1e6),
        **options,
    }
    if config.tiled is not None:
        uri, key = config.tiled, config.resolved_api_key()
        return LiveTiledWriter(lambda: connect(uri, key), journal, **common)
    server = EmbeddedServer(config.data_path, config.detector_path)
    try:
        writer = LiveTiledWriter(server.client, journal, on_close=server.close, **common)
    except BaseException:
        server.close()
        raise
    writer.embedded = server
    return writer


__all__ = ["LiveTiledWriter", "StorageError", "storage_writer"]
