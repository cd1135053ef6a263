"""What the watchdog sees of the stand: every HV channel (three group reads per supply), the
coldbox (one status line) and the chiller, each polled in its own task through the instruments'
clients, and how long each instrument has gone without answering."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from teststand.devices._backend import cancel_and_wait
from teststand.devices.caen import CaenHV
from teststand.devices.caen.client import ChannelStatus, decode_status
from teststand.devices.coldbox import ColdBox
from teststand.devices.coldbox.client import dew_point
from teststand.devices.coldbox.protocol import Status
from teststand.devices.lauda import LaudaChiller
from teststand.stand import TestStand


@dataclass(frozen=True)
class HVChannelReading:
    supply: str
    channel: int
    voltage: float  # V, magnitude
    current: float  # A
    status: ChannelStatus


@dataclass(frozen=True)
class ChillerReading:
    running: bool
    flags: frozenset[str]
    bath: float  # °C


@dataclass
class Snapshot:
    """What one poll saw; an instrument that did not answer is missing (None / absent)."""

    time: float
    hv: list[HVChannelReading] = field(default_factory=list)
    box: Status | None = None
    chiller: ChillerReading | None = None
    failures: dict[str, str] = field(default_factory=dict)
    #: The instrument each of `box` and `chiller` came from, by that role name.
    sources: dict[str, str] = field(default_factory=dict)
    #: How many answers each instrument had given when this was taken (a reading's number).
    answers: dict[str, int] = field(default_factory=dict)

    @property
    def dew_point(self) -> float | None:
        return None if self.box is None else dew_point(self.box.air, self.box.humidity)

    @property
    def max_voltage(self) -> float:
        return max((abs(r.voltage) for r in self.hv), default=0.0)


class StandReader:
    """Polls every HV supply, coldbox and chiller of a `TestStand`, each in its own task (a hung
    instrument delays no other), and keeps the latest answer of each and when it came."""

    def __init__(
        self, stand: TestStand, period: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.stand = stand
        self.period = period
        self.clock = clock  # the watchdog's `LiveClock`: a stalled loop is no silence
        self.supplies = {n: d for n, d in stand.instruments.items() if isinstance(d, CaenHV)}
        self.boxes = {n: d for n, d in stand.instruments.items() if isinstance(d, ColdBox)}
        self.chillers = {n: d for n, d in stand.instruments.items() if isinstance(d, LaudaChiller)}
        self.reads: dict[str, Callable[[], Awaitable[Any]]] = {
            **{n: partial(self._hv, n, d) for n, d in self.supplies.items()},
            **{n: d.client.status for n, d in self.boxes.items()},
            **{n: partial(self._chiller, d) for n, d in self.chillers.items()},
        }
        now = self.clock()
        self.last_answer = dict.fromkeys(self.reads, now)
        self.latest: dict[str, Any] = {}
        self.answers = dict.fromkeys(self.reads, 0)
        self.failures: dict[str, str] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, on_data: Callable[[], None]) -> Snapshot:
        """Read everything once (errors raise), then poll in the background; `on_data()` is
        called after every answer or failure."""
        names = list(self.reads)
        results = await asyncio.gather(*(self.reads[n]() for n in names))
        now = self.clock()
        for name, result in zip(names, results, strict=True):
            self.latest[name], self.last_answer[name] = result, now
            self.answers[name] += 1
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._poll(name, on_data), name=f"watchdog-{name}") for name in names
        ]
        return self.snapshot()

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            await cancel_and_wait(task)

    async def _poll(self, name: str, on_data: Callable[[], None]) -> None:
        while True:
            started = time.monotonic()
            await self._read(name)
            on_data()
            await asyncio.sleep(max(0.0, self.period - (time.monotonic() - started)))

    async def _read(self, name: str) -> None:
        try:
            self.latest[name] = await self.reads[name]()
        except Exception as exc:
            self.failures[name] = f"{type(exc).__name__}: {exc}"
        else:
            self.last_answer[name] = self.clock()
            self.answers[name] += 1
            self.failures.pop(name, None)

    async def refresh(self, names: Iterable[str]) -> None:
        """Read these instruments now (a failure is recorded, not raised)."""
        await asyncio.gather(*(self._read(name) for name in names))

    def snapshot(self) -> Snapshot:
        """The latest answer of every instrument (possibly old: see `silent_for`)."""
        snapshot = Snapshot(
            time=self.clock(), failures=dict(self.failures), answers=dict(self.answers)
        )
        for name, value in self.latest.items():
            if name in self.supplies:
                snapshot.hv.extend(value)
            elif name in self.boxes and snapshot.box is None:
                snapshot.box, snapshot.sources["box"] = value, name
            elif name in self.chillers and snapshot.chiller is None:
                snapshot.chiller, snapshot.sources["chiller"] = value, name
        return snapshot

    def silent_for(self) -> dict[str, float]:
        """Seconds (of `clock`) since each instrument last answered."""
        now = self.clock()
        return {name: now - last for name, last in self.last_answer.items()}

    async def _hv(self, name: str, supply: CaenHV) -> list[HVChannelReading]:
        client = supply.client
        volts, amps, words = await asyncio.gather(
            client.mon_all_floats("VMON"), client.mon_all_floats("IMON"), client.mon_all("STAT")
        )
        return [
            HVChannelReading(
                name,
                channel,
                abs(volts[channel]),
                abs(amps[channel]) * 1e-6,
                decode_status(int(float(words[channel])), client.dialect),
            )
            for channel in range(client.channels)
        ]

    async def _chiller(self, chiller: LaudaChiller) -> ChillerReading:
        client = chiller.client
        running, flags, bath = await asyncio.gather(
            client.running(), client.flags(), client.temperature()
        )
        return ChillerReading(running, flags, bath)


__all__ = ["ChillerReading", "HVChannelReading", "Snapshot", "StandReader"]
