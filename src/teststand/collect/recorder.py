"""`Recorder`: source PVs into ring buffers, by CA monitor (every update) or at a fixed period.

Monitors are aioca subscriptions with `all_updates=True` (no update merged away); a PV that
disconnects (its IOC restarted) is resubscribed by libca and recording goes on when it returns.
A PV no server answers for is reported (`on_message`) and the others are recorded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from aioca import DBR_DOUBLE, FORMAT_CTRL, FORMAT_TIME, CANothing, caget, camonitor

from teststand.collect.config import CollectorConfig
from teststand.collect.ring import Array, Ring

log = logging.getLogger("teststand.collect")
#: s after which a PV that never connected is reported as unknown.
CONNECT_TIMEOUT = 5.0


@dataclass(frozen=True)
class History:
    """One PV's recorded samples, oldest first."""

    pv: str
    units: str
    times: Array
    values: Array
    overwritten: int  # older samples the ring's length dropped


class Recorder:
    """Records `config.pvs` while `recording`; `start()`, `stop()`, `clear()` as the PVs ask."""

    def __init__(self, config: CollectorConfig, on_message: Callable[[str], None]) -> None:
        self.config = config
        self.rings = {pv: Ring(config.length) for pv in config.pvs}
        self.units = dict.fromkeys(config.pvs, "")
        self.connected = dict.fromkeys(config.pvs, False)
        self.ever_connected: set[str] = set()
        self.recording = False
        self.started = 0.0  # UNIX time of the last start
        self.on_message = on_message
        self._subscriptions: list[object] = []
        self._units_tasks: set[asyncio.Task[None]] = set()

    # ---- control ----

    def start(self) -> None:
        if not self.recording:
            self.recording = True
            self.started = time.time()

    def stop(self) -> None:
        self.recording = False

    def clear(self) -> None:
        for ring in self.rings.values():
            ring.clear()

    @property
    def samples(self) -> int:
        return sum(len(ring) for ring in self.rings.values())

    def histories(self) -> list[History]:
        out = []
        for pv, ring in self.rings.items():
            times, values = ring.snapshot()
            out.append(History(pv, self.units[pv], times, values, ring.overwritten))
        return out

    # ---- recording ----

    async def run(self) -> None:
        """Record until cancelled."""
        watch = asyncio.create_task(self._report_unknown())
        try:
            if self.config.mode == "monitor":
                self._subscribe()
                await asyncio.Event().wait()
            else:
                await self._sample_periodically()
        finally:
            watch.cancel()
            for subscription in self._subscriptions:
                subscription.close()  # type: ignore[attr-defined]

    def _subscribe(self) -> None:
        for pv in self.config.pvs:
            ring = self.rings[pv]

            def update(value: object, pv: str = pv, ring: Ring = ring) -> None:
                if not getattr(value, "ok", False):
                    self._connection(pv, False)
                    return
                if not self.connected[pv]:
                    self._connection(pv, True)
                if self.recording:
                    ring.append(value.timestamp, float(value))  # type: ignore[attr-defined, arg-type]

            self._subscriptions.append(
                camonitor(
                    pv,
                    update,
                    datatype=DBR_DOUBLE,
                    format=FORMAT_TIME,
                    all_updates=True,
                    notify_disconnect=True,
                )
            )

    async def _sample_periodically(self) -> None:
        period = self.config.period
        assert period is not None
        pvs = self.config.pvs
        next_time = time.monotonic()
        while True:
            values = await caget(
                pvs, datatype=DBR_DOUBLE, format=FORMAT_TIME, timeout=period, throw=False
            )
            now = time.time()
            for pv, value in zip(pvs, values, strict=True):
                ok = bool(getattr(value, "ok", False))
                if ok != self.connected[pv]:
                    self._connection(pv, ok)
                if ok and self.recording:
                    self.rings[pv].append(now, float(value))
            next_time += period
            await asyncio.sleep(max(0.0, next_time - time.monotonic()))

    def _connection(self, pv: str, up: bool) -> None:
        self.connected[pv] = up
        if up and pv not in self.ever_connected:
            self.ever_connected.add(pv)
            task = asyncio.get_running_loop().create_task(self._read_units(pv))
            self._units_tasks.add(task)
            task.add_done_callback(self._units_tasks.discard)
        elif not up and pv in self.ever_connected:
            self.on_message(f"{pv} disconnected; recording resumes when it is back")
        elif up:
            self.on_message(f"{pv} is back")

    async def _read_units(self, pv: str) -> None:
        try:
            value = await caget(pv, format=FORMAT_CTRL, timeout=CONNECT_TIMEOUT)
        except CANothing as exc:
            log.info("%s: no units (%s)", pv, exc)
            return
        self.units[pv] = str(getattr(value, "units", "") or "")

    async def _report_unknown(self) -> None:
        await asyncio.sleep(CONNECT_TIMEOUT)
        unknown = [pv for pv in self.config.pvs if pv not in self.ever_connected]
        if unknown:
            self.on_message(
                f"no Channel Access server answers for {', '.join(unknown)}: check the name(s) "
                "and EPICS_CA_ADDR_LIST; recording the other PVs (and these if they appear)"
            )
