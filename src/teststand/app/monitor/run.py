"""The monitor's main loop: CA subscriptions (aioca) → `Recorder` → `Shipper` → InfluxDB.

`run_monitor(config, prefix)` subscribes to every PV of the stand (and the state machine's),
writes a batch every `flush_period`, the PVs' heartbeats every second, and its own counters
(measurement `teststand_monitor`) every `stats_period`, which also go to `status.json` in the
journal directory for `teststand monitor status`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from typing import Any

from aioca import DBR_CHAR_STR, DBR_STRING, FORMAT_CTRL, FORMAT_TIME, caget, camonitor

from teststand.app.monitor.database import Database, DatabaseRefused
from teststand.app.monitor.journal import Journal
from teststand.app.monitor.lineprotocol import FieldValue, line
from teststand.app.monitor.pvs import STATE_PV, STATE_PVS, WatchedPV, watched_pvs
from teststand.app.monitor.recorder import Recorder
from teststand.app.monitor.shipper import Shipper
from teststand.app.pids import start_time
from teststand.config import ConfigError, StandConfig
from teststand.storage.monitoring import MonitoringConfig, PVPolicy

log = logging.getLogger("teststand.monitor")
#: Measurement of the monitor's own counters.
SELF = "teststand_monitor"
STATUS_FILE = "status.json"
#: s: the first wait for the PVs' units, doubled each round up to the maximum; s between rounds.
UNITS_TIMEOUT, UNITS_TIMEOUT_MAX, UNITS_RETRY = 2.0, 120.0, 5.0


def require_monitoring(config: StandConfig) -> MonitoringConfig:
    if config.monitoring is None:
        raise ConfigError(
            f"stand {config.name!r}: the `monitoring:` section is missing; give at least "
            "monitoring.database (url and db, see src/teststand/app/monitor/README.md)"
        )
    return config.monitoring


def all_pvs(config: StandConfig) -> list[WatchedPV]:
    """The stand's signal PVs and the state machine's (measurement `stand`)."""
    monitoring = require_monitoring(config)
    state = [
        WatchedPV(
            suffix=suffix,
            measurement="stand",
            tags={"stand": config.name, "device": "stand"},
            attribute=suffix.lower().replace(":", "_"),
            text=True,
            policy=monitoring.pvs.get(suffix, monitoring.default),
        )
        for suffix in STATE_PVS
    ]
    return [*watched_pvs(config), *state]


def _datatype(pv: WatchedPV) -> int | None:
    """Text PVs are char arrays (read as one string), but STATE is an enum (read as its name)."""
    if not pv.text:
        return None
    datatype: int = DBR_STRING if pv.suffix == STATE_PV else DBR_CHAR_STR
    return datatype


def _value(pv: WatchedPV, raw: Any) -> FieldValue:
    if pv.text:
        return str(raw)
    if isinstance(raw, bool | int):
        return int(raw)
    return float(raw)


class Monitor:
    def __init__(
        self, config: StandConfig, prefix: str, pvs: list[WatchedPV] | None = None
    ) -> None:
        self.config = config
        self.settings = require_monitoring(config)
        self.prefix = prefix
        self.pvs = all_pvs(config) if pvs is None else pvs
        self.journal = Journal(
            self.settings.journal_dir, self.settings.journal_max_bytes, self.settings.journal_warn
        )
        self.database = Database(self.settings.database)
        self.shipper = Shipper(self.database, self.journal, self.settings.batch_size)
        self.recorder = Recorder(config.name, self.pvs, self.shipper.add)
        self.connected = [False] * len(self.pvs)
        self.reconnects = 0
        self.seen: set[int] = set()
        self.started = time.monotonic()
        self.process_started = start_time()

    def _on_update(self, raw: Any, index: int) -> None:
        if not raw.ok:
            self.connected[index] = False
            return
        if not self.connected[index]:
            if index in self.seen:
                self.reconnects += 1
            self.connected[index] = True
            self.seen.add(index)
        pv = self.pvs[index]
        self.recorder.update(index, _value(pv, raw), int(raw.raw_stamp[0] * 1e9 + raw.raw_stamp[1]))

    async def _fetch_units(self) -> None:
        """Each PV's units (its control record), asked again for the PVs that did not answer,
        with a timeout doubled each round: a request that timed out is still answered by a
        slow IOC, so asking again at a fixed short period would pile requests up in it."""
        missing = [i for i in range(len(self.pvs)) if i not in self.recorder.units]
        timeout = UNITS_TIMEOUT
        while missing:
            names = [self.prefix + self.pvs[i].suffix for i in missing]
            values = await caget(names, format=FORMAT_CTRL, timeout=timeout, throw=False)
            for index, value in zip(missing, values, strict=True):
                if value.ok:
                    self.recorder.set_units(index, str(getattr(value, "units", "") or ""))
            missing = [i for i in missing if i not in self.recorder.units]
            if missing:
                await asyncio.sleep(UNITS_RETRY)
                timeout = min(2 * timeout, UNITS_TIMEOUT_MAX)

    async def check_database(self) -> None:
        """Write the first counters point: a refusal (credentials, database) stops the monitor."""
        try:
            await self.database.write([self._counters_line()])
        except DatabaseRefused:
            raise
        except Exception as exc:  # unreachable: the journal keeps the points until it answers
            log.warning(
                "%s; points go to the journal %s until it answers", exc, self.journal.directory
            )
            self.shipper.down = True

    async def run(self) -> None:
        await self.check_database()
        groups: dict[int | None, list[str]] = {}
        for pv in self.pvs:
            groups.setdefault(_datatype(pv), []).append(self.prefix + pv.suffix)
        index = {self.prefix + pv.suffix: i for i, pv in enumerate(self.pvs)}
        subscriptions = []
        for datatype, names in groups.items():
            subscriptions += camonitor(
                names,
                lambda raw, i, names=names: self._on_update(raw, index[names[i]]),
                format=FORMAT_TIME,
                datatype=datatype,
                notify_disconnect=True,
                all_updates=True,
            )
        units = asyncio.create_task(self._fetch_units())
        log.warning(
            "monitoring %d PVs under %s into %s", len(self.pvs), self.prefix, self.database.target
        )
        try:
            await self._loop()
        finally:
            units.cancel()
            for subscription in subscriptions:
                subscription.close()
            await self.shipper.flush()
            self._write_status()
            await self.database.close()

    async def _loop(self) -> None:
        next_beat = next_stats = time.monotonic()
        while True:
            await asyncio.sleep(self.settings.flush_period)
            now = time.monotonic()
            if now >= next_beat:
                self.recorder.heartbeat(time.time_ns())
                next_beat = now + 1.0
            if now >= next_stats:
                self.shipper.add(self._counters_line())
                self._write_status()
                next_stats = now + self.settings.stats_period
            await self.shipper.flush()

    def _counters(self) -> dict[str, FieldValue]:
        counters = self.shipper.counters
        backlog = self.journal.backlog()
        return {
            "points_written": counters.points_written,
            "points_made": self.recorder.points,
            "backlog_points": self.shipper.backlog_points,
            "backlog_bytes": backlog.bytes,
            "write_latency_s": counters.last_latency,
            "failed_writes": counters.failed_writes,
            "db_reconnects": counters.db_reconnects,
            "ca_reconnects": self.reconnects,
            "pvs_connected": sum(self.connected),
        }

    def _counters_line(self) -> str:
        return line(SELF, {"stand": self.config.name}, self._counters(), time.time_ns())

    def _write_status(self) -> None:
        status = {
            **self._counters(),
            "pid": os.getpid(),
            "started": self.process_started,
            "prefix": self.prefix,
            "database": self.database.target,
            "last_error": self.shipper.counters.last_error,
            "journal_error": self.shipper.counters.journal_error,
            "updated": time.time(),
        }
        path = self.journal.directory / STATUS_FILE
        partial = path.with_suffix(".part")
        try:
            partial.write_text(json.dumps(status, indent=1))
            partial.replace(path)
        except OSError as exc:
            log.warning("cannot write %s: %s", path, exc.strerror)


async def run_monitor(config: StandConfig, prefix: str) -> None:
    await Monitor(config, prefix).run()


__all__ = ["Monitor", "PVPolicy", "require_monitoring", "run_monitor"]
