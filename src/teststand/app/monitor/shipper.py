"""Batches of points to the database, through the journal whenever it is behind.

Points queue in memory; every `flush_period` one batch goes out. While the journal is empty a
batch is sent directly; if that fails, or the journal holds anything, the batch is appended to
the journal and the journal is drained oldest first. A batch the journal cannot take (disk
full, bound reached) stays in memory, ahead of newer ones, so the order holds and nothing is
dropped. The database deduplicates points with the same series and time: a batch sent again
after a timeout is still there once.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field

from teststand.app.monitor.database import Database, DatabaseError, DatabaseRefused
from teststand.app.monitor.journal import Journal, JournalError

log = logging.getLogger("teststand.monitor")


@dataclass
class Counters:
    points_written: int = 0
    writes: int = 0
    failed_writes: int = 0
    db_reconnects: int = 0
    last_latency: float = 0.0
    latencies: list[float] = field(default_factory=list)
    last_error: str = ""  # the database's
    journal_error: str = ""  # the journal's (full, disk full), "" once it takes batches again


class Shipper:
    def __init__(self, database: Database, journal: Journal, batch_size: int) -> None:
        self.database = database
        self.journal = journal
        self.batch_size = batch_size
        self.queue: deque[str] = deque()
        self.held: deque[list[str]] = deque()  # batches neither sent nor journaled
        self.counters = Counters()
        self.down = False

    def add(self, point: str) -> None:
        self.queue.append(point)

    @property
    def backlog_points(self) -> int:
        return len(self.queue) + sum(map(len, self.held)) + self.journal.backlog().points

    async def flush(self) -> None:
        """Send what is queued (and what the journal holds) as far as the database takes it."""
        while self.queue:
            size = min(self.batch_size, len(self.queue))
            batch = [self.queue.popleft() for _ in range(size)]
            idle = not self.held and not self.journal and not self.down
            if idle and await self._send(batch):
                continue
            self.held.append(batch)
        self._journal_held()
        await self._drain()

    def _journal_held(self) -> None:
        while self.held:
            try:
                self.journal.append(self.held[0])
            except JournalError as exc:
                if str(exc) != self.counters.journal_error:
                    log.error("%s", exc)
                self.counters.journal_error = str(exc)
                return
            self.held.popleft()
            self.counters.journal_error = ""

    async def _drain(self) -> None:
        while (oldest := self.journal.oldest()) is not None:
            path, lines = oldest
            if not await self._send(lines):
                return
            self.journal.remove(path)
        if self.held:  # the journal could not take them: send them straight from memory
            while self.held and await self._send(self.held[0]):
                self.held.popleft()

    async def _send(self, lines: list[str]) -> bool:
        try:
            latency = await self.database.write(lines)
        except DatabaseError as exc:
            self.counters.failed_writes += 1
            if not self.down or str(exc) != self.counters.last_error:
                level = logging.ERROR if isinstance(exc, DatabaseRefused) else logging.WARNING
                log.log(level, "%s; points go to the journal %s", exc, self.journal.directory)
            self.counters.last_error = str(exc)
            self.down = True
            return False
        if self.down:
            self.down = False
            self.counters.db_reconnects += 1
            log.warning("%s answers again; sending the journal", self.database.target)
        self.counters.writes += 1
        self.counters.points_written += len(lines)
        self.counters.last_latency = latency
        self.counters.latencies.append(latency)
        return True
