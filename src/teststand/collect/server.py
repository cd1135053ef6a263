"""A collector served by caproto: its state, commands and per-PV history as PVs.

Under the prefix `P` (e.g. `COL1:`): `P:STATE` (IDLE/RECORDING), `P:START` (UNIX time of the last
start), `P:NSAMPLES`, `P:NPVS`, `P:MSG` (the last problem or export), `P:EXPORTED` (the last
export: file or Tiled run uid); commands `P:CMD:START`, `P:CMD:STOP`, `P:CMD:CLEAR` (put 1),
`P:CMD:EXPORT` (put a file name: HDF5), `P:CMD:EXPORT_TILED` (put 1), `P:CMD:PUBLISH` (put 1:
update the history PVs now, not at the next `publish` tick); per recorded PV n
(1-based, in the configured order) `P:n:T` and `P:n:V` (waveforms, oldest first, V with the
PV's units), `P:n:NAME`, `P:n:NSAMPLES`, `P:n:CONNECTED`, `P:n:SEQ`.

T and V are two PVs, so a client reading one then the other may get them from two publishes
(the ring moved on in between). `P:n:SEQ` tells: it is odd while T and V change and even once
they agree; T and V read between two equal even SEQ reads (on one CA connection, whose requests
the server answers in order) belong together. `teststand.collect.device.read_history` does so.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from caproto import ChannelType
from caproto.server import PVGroup, pvproperty

from teststand.collect.caserver import TEXT, ServerContext, ready_hook
from teststand.collect.config import CollectorConfig, check_array_limit
from teststand.collect.errors import CollectorError
from teststand.collect.recorder import Recorder

log = logging.getLogger("teststand.collect")
STATES = ("IDLE", "RECORDING")


def _text(raw: Any) -> str:
    text = raw.decode("latin-1") if isinstance(raw, bytes) else str(raw)
    return text.rstrip("\0").strip()


def history_group(length: int) -> type[PVGroup]:
    """The PVs of one recorded PV, for histories of `length` samples."""

    class History(PVGroup):  # type: ignore[misc]
        T = pvproperty(value=[], dtype=float, max_length=length, read_only=True, units="s")
        V = pvproperty(value=[], dtype=float, max_length=length, read_only=True, precision=6)
        NAME = pvproperty(value="", read_only=True, **TEXT)
        NSAMPLES = pvproperty(value=0, read_only=True)
        CONNECTED = pvproperty(value=False, read_only=True)
        SEQ = pvproperty(value=0, read_only=True)

    return History


class CollectorPVs(PVGroup):  # type: ignore[misc]
    """The collector's own PVs; the commands call its `CollectorServer`."""

    STATE = pvproperty(value="IDLE", enum_strings=STATES, dtype=ChannelType.ENUM, read_only=True)
    START = pvproperty(value=0.0, read_only=True, units="s", precision=3)
    NSAMPLES = pvproperty(value=0, read_only=True)
    NPVS = pvproperty(value=0, read_only=True)
    MSG = pvproperty(value="", read_only=True, **TEXT)
    EXPORTED = pvproperty(value="", read_only=True, **TEXT)
    START_CMD = pvproperty(value=0, name="CMD:START")
    STOP_CMD = pvproperty(value=0, name="CMD:STOP")
    CLEAR_CMD = pvproperty(value=0, name="CMD:CLEAR")
    EXPORT_CMD = pvproperty(value="", name="CMD:EXPORT", **TEXT)
    EXPORT_TILED_CMD = pvproperty(value=0, name="CMD:EXPORT_TILED")
    PUBLISH_CMD = pvproperty(value=0, name="CMD:PUBLISH")

    def __init__(self, prefix: str, server: CollectorServer) -> None:
        self.server = server
        super().__init__(prefix)

    @START_CMD.putter  # type: ignore[no-redef, untyped-decorator]
    async def START_CMD(self, instance: Any, value: Any) -> Any:
        await self.server.command("start")
        return value

    @STOP_CMD.putter  # type: ignore[no-redef, untyped-decorator]
    async def STOP_CMD(self, instance: Any, value: Any) -> Any:
        await self.server.command("stop")
        return value

    @CLEAR_CMD.putter  # type: ignore[no-redef, untyped-decorator]
    async def CLEAR_CMD(self, instance: Any, value: Any) -> Any:
        await self.server.command("clear")
        return value

    @EXPORT_CMD.putter  # type: ignore[no-redef, untyped-decorator]
    async def EXPORT_CMD(self, instance: Any, value: Any) -> Any:
        await self.server.export_hdf5(Path(_text(value)))
        return value

    @PUBLISH_CMD.putter  # type: ignore[no-redef, untyped-decorator]
    async def PUBLISH_CMD(self, instance: Any, value: Any) -> Any:
        await self.server.publish()
        return value

    @EXPORT_TILED_CMD.putter  # type: ignore[no-redef, untyped-decorator]
    async def EXPORT_TILED_CMD(self, instance: Any, value: Any) -> Any:
        await self.server.export_tiled()
        return value


class CollectorServer:
    """Records `config.pvs` and serves the history; `await run(interfaces)` until cancelled."""

    def __init__(self, config: CollectorConfig, *, autostart: bool = True) -> None:
        check_array_limit(config.length)
        self.config = config
        self.autostart = autostart
        self.recorder = Recorder(config, self.post_message)
        self.main = CollectorPVs(config.prefix, self)
        group = history_group(config.length)
        self.histories = [group(f"{config.prefix}{n}:") for n in range(1, len(config.pvs) + 1)]
        self.pvdb: dict[str, Any] = dict(self.main.pvdb)
        for history in self.histories:
            self.pvdb.update(history.pvdb)
        self._published: list[int] = [-1] * len(config.pvs)
        self._units: list[str] = [""] * len(config.pvs)
        self._pending: set[asyncio.Task[Any]] = set()
        self._publishing = asyncio.Lock()

    # ---- commands ----

    async def command(self, action: str) -> None:
        getattr(self.recorder, action)()
        await self._publish_state()
        await self.publish()

    async def export_hdf5(self, path: Path) -> Path:
        from teststand.collect.export import write_hdf5  # h5py: only when exporting

        await self.publish()
        histories = self.recorder.histories()
        try:
            written = await asyncio.to_thread(write_hdf5, path, self.config, histories)
        except CollectorError as exc:
            await self._say(str(exc))
            raise
        await self._exported(str(written))
        return written

    async def export_tiled(self) -> str:
        from teststand.collect.export import write_tiled  # Tiled's client: only when exporting

        if not self.config.tiled:
            error = CollectorError(
                f"collector {self.config.name} has no Tiled server: start it with --tiled URI "
                "(or `tiled:` in its YAML section)"
            )
            await self._say(str(error))
            raise error
        key = os.environ.get(self.config.api_key_env) if self.config.api_key_env else None
        histories = self.recorder.histories()
        try:
            uid = await asyncio.to_thread(
                write_tiled, self.config.tiled, key, self.config, histories, self.recorder.started
            )
        except Exception as exc:
            await self._say(f"Tiled export failed: {type(exc).__name__}: {exc}")
            raise
        await self._exported(uid)
        return uid

    async def _exported(self, where: str) -> None:
        await self.main.EXPORTED.write(where)
        await self._say(f"exported to {where}")

    # ---- messages and publishing ----

    def post_message(self, text: str) -> None:
        """Show `text` in MSG (called from the recorder's callbacks)."""
        task = asyncio.get_running_loop().create_task(self._say(text))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _say(self, text: str) -> None:
        log.warning("%s: %s", self.config.name, text)
        await self.main.MSG.write(text[:511])

    async def _publish_state(self) -> None:
        await self.main.STATE.write(STATES[self.recorder.recording])
        await self.main.START.write(self.recorder.started)

    async def publish(self) -> None:
        """Post the histories that changed since the last call (one publish at a time)."""
        async with self._publishing:
            await self._publish()

    async def _publish(self) -> None:
        recorder = self.recorder
        for n, (pv, group) in enumerate(zip(self.config.pvs, self.histories, strict=True)):
            ring = recorder.rings[pv]
            if recorder.units[pv] != self._units[n]:
                self._units[n] = recorder.units[pv]
                await group.V.write_metadata(units=self._units[n])
            if group.CONNECTED.value != recorder.connected[pv]:
                await group.CONNECTED.write(recorder.connected[pv])
            if ring.total == self._published[n]:
                continue
            self._published[n] = ring.total
            times, values = ring.snapshot()
            sequence = group.SEQ.value
            await group.SEQ.write(sequence + 1)  # odd: T and V are changing
            await group.T.write(times)
            await group.V.write(values)
            await group.NSAMPLES.write(len(times))
            await group.SEQ.write(sequence + 2)  # even: T and V agree
        if self.main.NSAMPLES.value != recorder.samples:
            await self.main.NSAMPLES.write(recorder.samples)

    async def _publish_loop(self) -> None:
        while True:
            await self.publish()
            await asyncio.sleep(self.config.publish)

    async def run(
        self, interfaces: Sequence[str], on_ready: Callable[[], None] | None = None
    ) -> None:
        """Serve until cancelled; `on_ready()` once the server answers searches."""
        for pv, group in zip(self.config.pvs, self.histories, strict=True):
            await group.NAME.write(pv)
        await self.main.NPVS.write(len(self.config.pvs))
        if self.autostart:
            self.recorder.start()
        await self._publish_state()
        context = ServerContext(self.pvdb, list(interfaces))
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(context.run(startup_hook=ready_hook(on_ready)))
            tasks.create_task(self.recorder.run())
            tasks.create_task(self._publish_loop())
