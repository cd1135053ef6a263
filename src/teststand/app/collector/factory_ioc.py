"""The factory as PVs (`teststand collector factory --prefix FAC:`): create collectors and
processing devices on demand by a put, list them, stop them, from any CA client.

- `FAC:NEW` (put) a JSON object: a collector `{"name": "box", "prefix": "COL1:", "pvs": [...]}`
  (and any of `period`, `length`, `publish`, `tiled`, `api_key_env`, `idle`), or a processing
  device `{"kind": "dew-point", "name": "dp", "prefix": "LAB:DP:", "inputs": {"temperature":
  "T", "humidity": "RH"}, "options": {}}`. The put completes once it serves, and fails when it
  cannot (MSG says why).
- `FAC:STOP` (put) a name: that collector or processing device is stopped.
- `FAC:LIST` JSON list of `{name, kind, prefix, pid, running, port}` (every 2 s, after each put);
  `FAC:COUNT` how many run; `FAC:MSG` the last result or refusal.

Each one runs in a process of its own, started by `factory.start` (the registry that `teststand
collector list|stop` share): it outlives the factory. With `ports`, each serves on one of those
CA server ports not held by another running one (several servers on one host, searched by
unicast `EPICS_CA_ADDR_LIST` entries `host:port`); without, on the factory's own environment's.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

from caproto import ChannelType
from caproto.server import PVGroup, pvproperty

from teststand.app.collector import factory
from teststand.collect.caserver import TEXT, ServerContext, ready_hook
from teststand.collect.config import make_config
from teststand.collect.errors import CollectorError

log = logging.getLogger("teststand.collect")
#: A JSON request or listing: a char array of up to this many bytes (within CA's default limit).
JSON_LENGTH = 16000
_JSON: dict[str, Any] = {**TEXT, "max_length": JSON_LENGTH}
LIST_PERIOD = 2.0
COLLECTOR_KEYS = {"name", "prefix", "pvs", "period", "length", "publish", "tiled", "api_key_env"}
PROCESSING_KEYS = {"kind", "name", "prefix", "inputs", "options"}


def _text(raw: Any) -> str:
    text = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
    return text.rstrip("\0").strip()


def request_arguments(request: Any, interfaces: Sequence[str]) -> tuple[str, str, str, list[str]]:
    """(kind, name, prefix, `serve` arguments) of a NEW request, checked before anything starts."""
    if not isinstance(request, dict) or not isinstance(request.get("name"), str):
        raise CollectorError(
            'put a JSON object with a "name": {"name": "box", "prefix": "COL1:", "pvs": [...]} '
            'for a collector, or with "kind" for a processing device'
        )
    if "kind" in request:
        unknown = set(request) - PROCESSING_KEYS
        inputs, options = request.get("inputs") or {}, request.get("options") or {}
        if unknown or not isinstance(inputs, dict) or not isinstance(options, dict):
            raise CollectorError(
                f"processing {request['name']}: give kind, name, prefix, inputs {{NAME: PV}} and "
                f"options {{NAME: number}} only{f' (not {sorted(unknown)})' if unknown else ''}"
            )
        try:
            numbers = {str(k): float(v) for k, v in options.items()}
        except (TypeError, ValueError):
            raise CollectorError(f"processing {request['name']}: options are numbers") from None
        prefix = str(request.get("prefix") or "")
        if not prefix:
            raise CollectorError(f"processing {request['name']}: give its PV prefix (prefix)")
        inputs = {str(k): str(v) for k, v in inputs.items()}
        arguments = factory.processing_arguments(
            str(request["kind"]), prefix, inputs, numbers, interfaces
        )
        return "processing", request["name"], prefix, arguments
    unknown = set(request) - COLLECTOR_KEYS - {"idle"}
    if unknown:
        raise CollectorError(
            f"collector {request['name']}: unknown settings {sorted(unknown)}; give "
            f"{', '.join(sorted(COLLECTOR_KEYS))} or idle"
        )
    settings = {k: v for k, v in request.items() if k != "idle"}
    if "period" in settings:
        settings["mode"] = "period"
    config = make_config(**settings)
    idle = bool(request.get("idle", False))
    arguments = factory.collector_arguments(config, idle=idle, interfaces=interfaces)
    return "collector", config.name, config.prefix, arguments


class FactoryPVs(PVGroup):  # type: ignore[misc]
    """The factory's PVs; puts call its `FactoryServer`."""

    NEW = pvproperty(value="", **_JSON)
    STOP = pvproperty(value="", **TEXT)
    LIST = pvproperty(value="[]", read_only=True, **_JSON)
    MSG = pvproperty(value="", read_only=True, **TEXT)
    COUNT = pvproperty(value=0, read_only=True, dtype=ChannelType.LONG)

    def __init__(self, prefix: str, server: FactoryServer) -> None:
        self.server = server
        super().__init__(prefix)

    @NEW.putter  # type: ignore[no-redef, untyped-decorator]
    async def NEW(self, instance: Any, value: Any) -> Any:
        await self.server.new(_text(value))
        return value

    @STOP.putter  # type: ignore[no-redef, untyped-decorator]
    async def STOP(self, instance: Any, value: Any) -> Any:
        await self.server.stop(_text(value))
        return value


class FactoryServer:
    """Serves the factory under `prefix`; the processes it starts serve on `interfaces`."""

    def __init__(
        self,
        prefix: str,
        interfaces: Sequence[str] = ("0.0.0.0",),
        ports: Sequence[int] = (),
    ) -> None:
        self.prefix = prefix
        self.interfaces = list(interfaces)
        self.ports = list(ports)
        self._starting = asyncio.Lock()  # one start at a time: each gets a port of its own
        self.pvs = FactoryPVs(prefix, self)
        self.pvdb: dict[str, Any] = dict(self.pvs.pvdb)

    async def _say(self, text: str) -> None:
        log.info("factory %s: %s", self.prefix, text)
        await self.pvs.MSG.write(text[:511])

    async def _refused(self, error: Exception) -> None:
        await self._say(f"{type(error).__name__}: {error}")

    async def new(self, text: str) -> None:
        try:
            try:
                request = json.loads(text)
            except ValueError as exc:
                raise CollectorError(f"NEW: not JSON ({exc}): put a JSON object") from None
            kind, name, prefix, arguments = request_arguments(request, self.interfaces)
            async with self._starting:
                await asyncio.to_thread(factory.check_unused, name, prefix)
                port = await asyncio.to_thread(self._free_port)
                entry = await asyncio.to_thread(
                    factory.start, kind, name, prefix, arguments, None, port
                )
        except Exception as exc:
            await self._refused(exc)
            raise
        await self._say(f"{kind} {entry.name} serves {entry.prefix} (pid {entry.pid})")
        await self.show_list()

    def _free_port(self) -> int | None:
        if not self.ports:
            return None
        held = {e.port for e in factory.entries() if e.running}
        for port in self.ports:
            if port not in held:
                return port
        raise CollectorError(
            f"all {len(self.ports)} CA server ports of the factory ({self.ports}) are in use: "
            "stop one (FAC:STOP), or start the factory with more --ports"
        )

    async def stop(self, name: str) -> None:
        try:
            entry = await asyncio.to_thread(factory.stop, name)
        except Exception as exc:
            await self._refused(exc)
            raise
        await self._say(f"stopped {entry.kind} {entry.name} ({entry.prefix})")
        await self.show_list()

    async def show_list(self) -> None:
        entries = await asyncio.to_thread(factory.entries)
        listing = [
            {"name": e.name, "kind": e.kind, "prefix": e.prefix, "pid": e.pid, "running": r}
            | {"port": e.port}
            for e, r in ((e, e.running) for e in entries)
        ]
        text = json.dumps(listing)
        if len(text) > JSON_LENGTH:
            text = json.dumps([{k: e[k] for k in ("name", "running")} for e in listing])
        if text != _text(self.pvs.LIST.value):
            await self.pvs.LIST.write(text[:JSON_LENGTH])
        running = sum(1 for e in listing if e["running"])
        if running != self.pvs.COUNT.value:
            await self.pvs.COUNT.write(running)

    async def _list_loop(self) -> None:
        while True:
            await self.show_list()
            await asyncio.sleep(LIST_PERIOD)

    async def run(
        self, interfaces: Sequence[str], on_ready: Callable[[], None] | None = None
    ) -> None:
        """Serve until cancelled; `on_ready()` once the server answers searches."""
        async with asyncio.TaskGroup() as tasks:
            context = ServerContext(self.pvdb, list(interfaces))
            tasks.create_task(context.run(startup_hook=ready_hook(on_ready)))
            tasks.create_task(self._list_loop())
