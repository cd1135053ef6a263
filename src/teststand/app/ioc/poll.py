"""One poll loop per instrument: read its signals together (the devices' group reads share one
round trip), post every value to its PV. Wire traffic does not depend on the number of clients.

Readbacks (what the devices' `read()` returns) are read and posted every cycle (a monitor sees
each poll, like a scanned record with MDEL -1); settings (configuration and the rest) are read
every `settings_every` cycles and after every put, and posted when they change. A failed read
puts the PV in INVALID/COMM alarm with its last value: no stale value without an alarm.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from caproto import AlarmSeverity, AlarmStatus, ChannelData

from teststand.app.ioc.alarms import NO_ALARM, Alarm
from teststand.app.ioc.channels import to_channel
from teststand.errors import TeststandError, TransportError
from teststand.stand.pvnames import SignalPV

log = logging.getLogger("teststand.ioc")
LINK_LOST: Alarm = (AlarmStatus.COMM, AlarmSeverity.INVALID_ALARM)
#: A read the instrument refused (an SMU with its output off measures nothing): no value.
UNDEFINED: Alarm = (AlarmStatus.UDF, AlarmSeverity.INVALID_ALARM)


@dataclass
class ServedSignal:
    """A signal, its PV and how its alarm is found."""

    spec: SignalPV
    channel: ChannelData
    datatype: type
    readback: bool  # read every cycle (else with the settings)
    alarm: Alarm = NO_ALARM
    value: Any = None  # the last value read (None: never read)
    failing: bool = False  # the last read failed (logged once per change)
    posted: Any = None  # (value, alarm) last posted: settings post on change, readbacks always
    #: Another served signal whose alarm this one shares (a slot's bias: its channel's status).
    linked: ServedSignal | None = None
    #: A move's `…_WRITE` PV (the set point written alone): it shows the same value.
    alone: ChannelData | None = None


@dataclass
class PollStats:
    cycles: int = 0
    failures: int = 0
    last_cycle: float = 0.0  # seconds the last cycle took


@dataclass
class Group:
    """The signals one instrument's loop reads."""

    name: str
    signals: list[ServedSignal]
    stats: PollStats = field(default_factory=PollStats)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


AlarmRule = Callable[[str, Any], Alarm]


def _refused(error: BaseException) -> bool:
    """The instrument answered but has no value (not a link problem: a timeout or lost link)."""
    return isinstance(error, TeststandError) and not isinstance(error, TransportError)


class Poller:
    def __init__(
        self,
        groups: Iterable[Group],
        alarm_rule: AlarmRule,
        *,
        period: float = 0.2,
        settings_every: int = 10,
    ) -> None:
        self.groups = {group.name: group for group in groups}
        self.alarm_rule = alarm_rule
        self.period = period
        self.settings_every = settings_every

    async def read(self, group: Group, signals: list[ServedSignal]) -> None:
        """Read `signals` together and post each value (timestamp, alarm) as soon as it is read:
        a change waits for its own read, not for the rest of the cycle. A signal whose alarm
        follows another's (`linked`) posts after the cycle, with that one's fresh alarm."""
        async with group.lock:
            started = time.monotonic()
            errors = await asyncio.gather(*(self._read_one(s) for s in signals))
            for served in signals:
                if served.linked is not None:
                    await self._post_due(served)
            if any(error is not None for error in errors):
                group.stats.failures += 1
            for served, error in zip(signals, errors, strict=True):
                if (error is not None) != served.failing:
                    served.failing = not served.failing
                    if served.failing:
                        log.warning("%s: read failed: %s", served.spec.suffix, error)
                    else:
                        log.warning("%s: read works again", served.spec.suffix)
            group.stats.last_cycle = time.monotonic() - started

    async def _read_one(self, served: ServedSignal) -> Exception | None:
        """Read one signal, note its value and alarm, post it unless linked; the error or None."""
        try:
            value = await served.spec.signal.get_value()
        except Exception as error:
            served.alarm = UNDEFINED if _refused(error) else LINK_LOST
            outcome: Exception | None = error
        else:
            served.alarm = self.alarm_rule(served.spec.attribute, value)
            served.value = value
            outcome = None
        if served.linked is None:
            await self._post_due(served)
        return outcome

    async def _post_due(self, served: ServedSignal) -> None:
        """Post a readback always, a setting when its value or alarm changed."""
        alarm = served.alarm
        if alarm == NO_ALARM and served.linked is not None:
            alarm = served.linked.alarm
        posted = (served.value, alarm)
        if served.readback or posted != served.posted:
            served.posted = posted
            await self._post(served, alarm, time.time())

    async def _post(self, served: ServedSignal, alarm: Alarm, stamp: float) -> None:
        status, severity = alarm
        value = served.value
        for channel in (served.channel, served.alone):
            if channel is None:
                continue
            if value is None:  # never read: keep the initial value, say why
                await channel.write(
                    channel.value, verify_value=False, status=status, severity=severity
                )
                continue
            await channel.write(
                to_channel(served.datatype, value),
                verify_value=False,
                timestamp=stamp,
                status=status,
                severity=severity,
            )

    async def cycle(self, group: Group, *, settings: bool) -> None:
        signals = [s for s in group.signals if settings or s.readback]
        await self.read(group, signals)
        group.stats.cycles += 1

    async def run_group(self, group: Group) -> None:
        """Poll one instrument until cancelled."""
        count = 0
        while True:
            started = time.monotonic()
            try:
                await self.cycle(group, settings=count % self.settings_every == 0)
            except Exception:  # a bug here must not stop the other loops; say it loudly
                log.exception("%s: poll cycle failed", group.name)
            count += 1
            await asyncio.sleep(max(0.0, self.period - (time.monotonic() - started)))

    async def refresh(self, devices: set[int], written: object = None) -> None:
        """Read and post now the readbacks of these devices (by `id`) and the `written` signal
        (a put's), so that a client reading after its put sees what the put did."""
        for group in self.groups.values():
            signals = [
                s
                for s in group.signals
                if id(s.spec.device) in devices and (s.readback or s.spec.signal is written)
            ]
            if signals:
                await self.read(group, signals)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            for group in self.groups.values():
                tasks.create_task(self.run_group(group))
