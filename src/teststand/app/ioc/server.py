"""`StandIOC`: the stand's devices served as Channel Access PVs by caproto's asyncio server.

Extension hook (for the safety package and other modules): before `run()`, call
`ioc.add_pvs({"SAFETY:STATE": channel, …})` to serve more PVs under the prefix and
`ioc.add_task(factory)` to run a coroutine (made by `factory()`) for the IOC's lifetime, next to
the poll loops; `ioc.stand`, `ioc.control` and `ioc.poller` are there to use. A task that raises
stops the IOC (safety must not fail silently).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from caproto import ChannelData, ChannelDouble, ChannelString
from ophyd_async.core import Device, Signal

from teststand.app.ioc.alarms import alarm_of
from teststand.app.ioc.channels import ServedInteger, clip, decode, make_channel, text_channel
from teststand.app.ioc.checks import drive_limits
from teststand.app.ioc.control import Control
from teststand.app.ioc.logs import quiet_caproto
from teststand.app.ioc.poll import Group, Poller, ServedSignal
from teststand.app.ioc.puts import Messages, Puts
from teststand.collect.caserver import ServerContext
from teststand.stand import TestStand
from teststand.stand.pvnames import MESSAGE, SignalPV, walk

log = logging.getLogger("teststand.ioc")
#: The value a PV starts with when its signal cannot be read at start (it is INVALID then).
DEFAULTS: dict[type, Any] = {float: 0.0, int: 0, bool: False, str: ""}
TaskFactory = Callable[[], Coroutine[Any, Any, None]]
#: s between two looks for the controlling client's circuit (a killed client is seen this fast).
OWNER_WATCH_PERIOD = 0.2


class IocContext(ServerContext):
    """caproto's asyncio server, sending an update to a snapshot of a PV's subscriptions.

    caproto 1.3 iterates the live deque of subscriptions across the awaits of the sends; a client
    subscribing or leaving meanwhile raised `RuntimeError: deque mutated during iteration`, and
    caproto then shut the whole server down (seen under load: clients come and go while
    `CONTROL:OWNER` changes).
    """

    async def _subscription_queue_iteration(
        self, sub_specs: Any, metadata: Any, values: Any, flags: int, sub: Any
    ) -> None:
        if sub is not None:  # one new subscription's first update
            await super()._subscription_queue_iteration(sub_specs, metadata, values, flags, sub)
            return
        for spec in sub_specs:
            live = self.subscriptions[spec]
            for each in list(live):
                if each in live:  # not gone while the others were sent
                    await self._subscription_queue_send(
                        spec, each, metadata=metadata, values=values, flags=flags
                    )


@dataclass(frozen=True)
class PVInfo:
    """One line of `teststand ioc --list`."""

    name: str
    type: str
    units: str
    writable: bool
    description: str


def _default(datatype: Any) -> Any:
    return DEFAULTS[datatype] if datatype in DEFAULTS else next(iter(datatype))


def _description(spec: SignalPV) -> str:
    words = spec.suffix.replace(":", " ").replace("_", " ").lower()
    return words[:40]


class StandIOC:
    """Serve `stand` under `prefix`; `await setup()` builds the PVs, `await run()` serves them."""

    def __init__(self, stand: TestStand, prefix: str, *, poll_period: float = 0.2) -> None:
        self.stand = stand
        self.prefix = prefix
        self.poll_period = poll_period
        self.control = Control()
        self.pvdb: dict[str, ChannelData] = {}
        self.info: list[PVInfo] = []
        self.served: dict[str, ServedSignal] = {}
        self._tasks: list[TaskFactory] = []
        self.poller: Poller | None = None
        self.puts: Puts | None = None
        self.context: IocContext | None = None

    # ---- the hook ----

    def add_pvs(self, pvs: Mapping[str, ChannelData]) -> None:
        """Serve more PVs, named by their suffix under the prefix."""
        for suffix, channel in pvs.items():
            name = self.prefix + suffix
            if name in self.pvdb:
                raise ValueError(f"{name} is already served")
            self.pvdb[name] = channel

    def add_task(self, factory: TaskFactory) -> None:
        """Run `factory()` for the IOC's lifetime."""
        self._tasks.append(factory)

    # ---- building ----

    async def setup(self) -> None:
        signals, verbs = walk(self.stand)
        settings = await self._setting_names()
        messages: dict[str, ChannelData] = {}
        for spec in signals:
            messages.setdefault(spec.device_suffix, text_channel())
        stand_message = text_channel()
        self.messages = Messages(stand_message, messages)
        groups: dict[str, list[ServedSignal]] = {}
        all_served = await asyncio.gather(
            *(self._serve_signal(spec, spec.signal.name not in settings) for spec in signals)
        )
        for spec, served in zip(signals, all_served, strict=True):
            groups.setdefault(self._group_of(spec), []).append(served)
        self._link_slot_alarms()
        self.poller = Poller(
            [Group(name, members) for name, members in groups.items()],
            lambda attribute, value: alarm_of(attribute, value, self.stand.config),
            period=self.poll_period,
        )
        puts = self.puts = Puts(self.stand, self.control, self.messages, self.poller.refresh)
        for served in self.served.values():
            if served.spec.writable:
                served.channel.on_put = puts.for_signal(served.spec, served.datatype)
            if served.alone is not None:
                served.alone.on_put = puts.for_signal(served.spec, served.datatype, alone=True)
        for verb in verbs:
            channel = text_channel() if verb.arguments else ServedInteger(value=0)
            channel.on_put = puts.for_verb(verb)
            self._add(
                verb.suffix, channel, "text" if verb.arguments else "int", "", True, verb.verb
            )
        for suffix, channel in messages.items():
            self._add(f"{suffix}:{MESSAGE}", channel, "text", "", False, "last refusal or error")
        self._add(MESSAGE, stand_message, "text", "", False, "last refusal or error")
        self._control_pvs()

    async def _setting_names(self) -> set[str]:
        """Names of the configuration signals (read with the settings, every tenth cycle);
        every other signal is a readback, read every cycle."""
        names: set[str] = set()
        todo: list[object] = [*self.stand.instruments.values(), *self.stand.slots.values()]
        while todo:
            device = todo.pop()
            for describe in getattr(device, "_describe_config_funcs", ()):
                owner = describe.__self__
                if isinstance(owner, Signal):
                    names.add(owner.name)
                else:
                    todo.append(owner)
            todo.extend(child for _, child in getattr(device, "children", list)())
        return names

    def _group_of(self, spec: SignalPV) -> str:
        """The instrument whose loop reads the signal (a slot's: the instrument behind it)."""
        if spec.top != "slots":
            return spec.top
        slot = self.stand.config.slots[getattr(spec.device, "number", 0)]
        role = {"lv_voltage": slot.lv, "lv_current": slot.lv, "temperature": slot.temperature}
        ref = role.get(spec.attribute) or slot.hv
        return ref.instrument

    async def _serve_signal(self, spec: SignalPV, readback: bool) -> ServedSignal:
        signal = spec.signal
        datatype = signal.datatype or float
        metadata: dict[str, Any] = dict(getattr(signal._connector.backend, "metadata", {}))
        try:
            value = await signal.get_value()
        except Exception as exc:  # served INVALID until a read works (an SMU with output off)
            log.info("%s: no initial value (%s)", spec.suffix, exc)
            value = None
        initial = value if value is not None else _default(datatype)
        channel = make_channel(datatype, initial, metadata)
        served = ServedSignal(spec, channel, datatype, readback, value=value)
        self.served[spec.suffix] = served
        units = metadata.get("units") or ""
        kind = getattr(datatype, "__name__", str(datatype))
        pvs = [(spec.suffix, channel, _description(spec))]
        if spec.move and spec.writable:  # its `…_WRITE` twin: the set point written alone
            served.alone = make_channel(datatype, initial, metadata)
            pvs = [
                (spec.suffix, channel, f"{_description(spec)}: move, done when settled"),
                (spec.write_suffix, served.alone, "set point alone (no move)"),
            ]
        for suffix, pv, description in pvs:
            self._add(suffix, pv, kind, units, spec.writable, description)
            self._fields(suffix, DESC=description[:40], EGU=units)
            if metadata.get("precision") is not None:
                self._fields(suffix, PREC=int(metadata["precision"]))
            if spec.move:
                await self._drive_limits(spec.device, suffix, pv)
        return served

    async def _drive_limits(self, device: Device, suffix: str, channel: ChannelData) -> None:
        limits = await drive_limits(device)
        if limits is not None and isinstance(channel, ChannelDouble):
            await channel.write_metadata(lower_ctrl_limit=limits[0], upper_ctrl_limit=limits[1])
            self._fields(suffix, DRVL=limits[0], DRVH=limits[1])

    def _fields(self, suffix: str, **fields: Any) -> None:
        for field, value in fields.items():
            channel: ChannelData = (
                ChannelString(value=value) if isinstance(value, str) else ChannelDouble(value=value)
            )
            self.pvdb[f"{self.prefix}{suffix}.{field}"] = channel

    def _add(
        self, suffix: str, channel: ChannelData, kind: str, units: str, writable: bool, desc: str
    ) -> None:
        self.pvdb[self.prefix + suffix] = channel
        self.info.append(PVInfo(self.prefix + suffix, kind, units, writable, desc))

    def _link_slot_alarms(self) -> None:
        """A slot's bias and leakage share the alarm of its HV channel's status (a trip)."""
        by_device = {
            id(s.spec.device): s for s in self.served.values() if s.spec.attribute == "status"
        }
        for served in self.served.values():
            channel = getattr(served.spec.device, "hv_channel", None)
            if channel is not None and served.spec.attribute in ("bias", "leakage_current"):
                served.linked = by_device.get(id(channel))

    def _control_pvs(self) -> None:
        owner = text_channel()
        control = self.control

        async def show_owner() -> None:
            await owner.write(clip(control.describe()), verify_value=False)

        def handler(action: Callable[[str], Any]) -> Callable[[Any], Awaitable[Any]]:
            async def put(raw: Any) -> Any:
                text = decode(raw)
                try:
                    action(text)
                except Exception as exc:
                    await self.messages.post("CONTROL", f"{type(exc).__name__}: {exc}")
                    raise
                await show_owner()
                return raw

            return put

        for verb, action in (
            ("CLAIM", control.claim),
            ("TAKEOVER", control.takeover),
            ("RELEASE", lambda _text: control.release()),
        ):
            channel = text_channel()
            channel.on_put = handler(action)
            self._add(f"CONTROL:{verb}", channel, "text", "", True, f"control {verb.lower()}")
        self._add("CONTROL:OWNER", owner, "text", "", False, "who holds control")
        self._show_owner = show_owner

    # ---- serving ----

    async def _watch_owner(self) -> None:
        """Release control when its owner's circuit has gone (the client died or closed)."""
        while True:
            await asyncio.sleep(OWNER_WATCH_PERIOD)
            if self.context is None:
                continue
            live = [f"{c.circuit.address[0]}:{c.circuit.address[1]}" for c in self.context.circuits]
            if self.control.prune(live):
                await self._show_owner()

    async def run(self, interfaces: Sequence[str]) -> None:
        """Serve until cancelled; the poll loops and the added tasks run alongside."""
        assert self.poller is not None, "call setup() first"
        # Everything built so far (the stand, its devices, the PVs) lives as long as the IOC: out
        # of the collector's reach, a full collection scans only what serving allocates. Before,
        # each one (every 10 s) scanned 145,000 objects and stopped the loop: 0.5-0.8 s on a
        # loaded machine, with every read and update waiting behind it.
        gc.collect()
        gc.freeze()
        quiet_caproto()
        self.context = IocContext(self.pvdb, list(interfaces))
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.context.run())
            tasks.create_task(self.poller.run())
            tasks.create_task(self._watch_owner())
            for factory in self._tasks:
                tasks.create_task(factory())
