"""`Collector`: an ophyd-async flyer over a served collector (`teststand collector serve`).

In a plan::

    yield from bps.kickoff(collector, wait=True)   # records from now (starts it if idle)
    ...                                            # the long test
    yield from bps.complete(collector, wait=True)  # the window ends (stops it if it started it)
    yield from bps.collect(collector)              # one stream per recorded PV in this run

Each PV's samples inside the kickoff-complete window become a stream `<name>_<PV>` (letters,
digits, underscores) whose data key has the PV's units and `source: ca://PV`. A window longer
than the collector's ring holds loses its oldest samples: a warning says so.

`read_history(prefix, n)` reads one PV's T and V waveforms from the same publish (by the
collector's `n:SEQ`), for any client. `stand_collectors(config)`: the stand file's collectors
(`collectors:`, each served on its host) as flyers, by name.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import numpy as np
from aioca import DBR_CHAR_STR, FORMAT_CTRL, CANothing, caget, cainfo
from event_model import DataKey, PartialEventPage
from ophyd_async.core import AsyncStatus, Device, SignalR, StandardReadable, StandardReadableFormat
from ophyd_async.epics.core import epics_signal_r

from teststand.collect.errors import CollectorError
from teststand.collect.export import stream_key
from teststand.collect.ring import Array
from teststand.config import StandConfig
from teststand.stand.ca import READ_TIMEOUT, StrictCaBackend, put_checked

log = logging.getLogger("teststand.collect")
#: Reads of a history that changed meanwhile before `read_history` gives up.
READ_ATTEMPTS = 20


async def read_history(prefix: str, number: int) -> tuple[Array, Array]:
    """(times, values) of recorded PV `number` of the collector at `prefix`, from one publish:
    read between two reads of `n:SEQ` that agree and are even (see `teststand.collect.server`).
    Raises `CANothing` when the collector does not answer."""
    base = f"{prefix}{number}:"
    for _ in range(READ_ATTEMPTS):
        before = int(await caget(base + "SEQ"))
        if before % 2 == 0:
            times = np.atleast_1d(np.asarray(await caget(base + "T"), dtype=float))
            values = np.atleast_1d(np.asarray(await caget(base + "V"), dtype=float))
            if int(await caget(base + "SEQ")) == before:
                return times, values
        await asyncio.sleep(0.01)
    raise CollectorError(
        f"the history of {base} changed at each of {READ_ATTEMPTS} reads: the collector "
        "publishes faster than it can be read; give it a longer --publish period"
    )


@dataclass(frozen=True)
class Recorded:
    number: int  # n of the P:n:* PVs
    pv: str
    units: str
    stream: str
    capacity: int  # samples the collector's ring holds


class Collector(Device):
    """The collector serving under `prefix` (e.g. `COL1:`), as a bluesky flyer."""

    def __init__(self, prefix: str, name: str = "") -> None:
        self.prefix = prefix
        self.state = epics_signal_r(str, f"{prefix}STATE")
        self.start_time = epics_signal_r(float, f"{prefix}START")
        self.pv_count = epics_signal_r(int, f"{prefix}NPVS")
        self._window: tuple[float, float | None] | None = None
        self._started_here = False
        self._recorded: list[Recorded] | None = None
        super().__init__(name=name)

    async def _recorded_pvs(self) -> list[Recorded]:
        if self._recorded is None:
            found = []
            try:
                for n in range(1, await self.pv_count.get_value() + 1):
                    pv = str(await caget(f"{self.prefix}{n}:NAME", datatype=DBR_CHAR_STR))
                    ctrl = await caget(f"{self.prefix}{n}:V", format=FORMAT_CTRL, count=1)
                    units = str(getattr(ctrl, "units", "") or "")
                    capacity = int((await cainfo(f"{self.prefix}{n}:V")).count)
                    stream = f"{self.name}_{stream_key(pv)}"
                    found.append(Recorded(n, pv, units, stream, capacity))
            except CANothing as exc:
                raise CollectorError(
                    f"{self.name}: the collector at {self.prefix} does not answer ({exc}); is "
                    "`teststand collector serve` running with that prefix?"
                ) from None
            self._recorded = found
        return self._recorded

    @AsyncStatus.wrap
    async def kickoff(self) -> None:
        self._recorded = None
        await self._recorded_pvs()
        self._started_here = await self.state.get_value() != "RECORDING"
        if self._started_here:
            await put_checked(f"{self.prefix}CMD:START", 1, timeout=READ_TIMEOUT)
        self._window = (time.time(), None)

    @AsyncStatus.wrap
    async def complete(self) -> None:
        if self._window is None:
            raise CollectorError(f"{self.name}: complete() before kickoff()")
        self._window = (self._window[0], time.time())
        command = "STOP" if self._started_here else "PUBLISH"  # both publish the history now
        await put_checked(f"{self.prefix}CMD:{command}", 1, timeout=READ_TIMEOUT)

    async def describe_collect(self) -> dict[str, dict[str, DataKey]]:
        return {
            r.stream: {
                r.stream: DataKey(source=f"ca://{r.pv}", dtype="number", shape=[], units=r.units)
            }
            for r in await self._recorded_pvs()
        }

    async def collect_pages(self) -> AsyncIterator[PartialEventPage]:
        if self._window is None:
            raise CollectorError(f"{self.name}: collect() before kickoff()")
        start, end = self._window[0], self._window[1] or time.time()
        for recorded in await self._recorded_pvs():
            try:
                times, values = await read_history(self.prefix, recorded.number)
            except CANothing as exc:
                raise CollectorError(
                    f"{self.name}: cannot read the history of {recorded.pv} from "
                    f"{self.prefix} ({exc}); is the collector running?"
                ) from None
            count = min(len(times), len(values))
            times, values = times[:count], values[:count]
            inside = (times >= start) & (times <= end)
            if count >= recorded.capacity and times[0] > start:
                log.warning(
                    "%s: the collector's %d samples of %s start %.1f s after kickoff: older "
                    "samples of this run were overwritten (give the collector a longer --length)",
                    self.name,
                    count,
                    recorded.pv,
                    times[0] - start,
                )
            if not inside.any():
                continue
            stamps = times[inside].tolist()
            yield PartialEventPage(
                time=stamps,
                data={recorded.stream: values[inside].tolist()},
                timestamps={recorded.stream: stamps},
            )


def stand_collectors(config: StandConfig) -> dict[str, Collector]:
    """The stand file's collectors as `Collector` flyers named after them."""
    return {name: Collector(p.prefix, name=name) for name, p in config.collectors.items()}


class Processed(StandardReadable):
    """A processing device's outputs (`teststand processing serve`) as a readable device: each
    output a hinted signal named by it in lower case (`DEW_POINT` -> `dew_point`), and `msg`.
    A value in INVALID alarm (an input lost) is read as an error, never as a value."""

    def __init__(self, prefix: str, outputs: Sequence[str], name: str = "") -> None:
        if not outputs:
            raise CollectorError(f"{prefix}: name the outputs to read (e.g. ['DEW_POINT'])")
        with self.add_children_as_readables(StandardReadableFormat.HINTED_SIGNAL):
            for output in outputs:
                pv = f"{prefix}{output}"
                backend: StrictCaBackend[float] = StrictCaBackend(float, pv, pv)
                setattr(self, output.lower(), SignalR(backend))
        self.msg = epics_signal_r(str, f"{prefix}MSG")
        super().__init__(name=name)
