"""Serve a simulated instrument over a real pty or a TCP socket, with pacing and fault injection.

A pty is exposed through a stable symlink (like `/dev/serial/by-id/…`): when a fault pulls the
cable, the pty is closed and a new one appears behind the same symlink after the replug delay,
so a driver that reconnects by path finds the instrument again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
import tty
from collections import Counter, deque
from collections.abc import Callable

from teststand.sim.faults import (
    Faults,
    add_noise,
    garble,
    misread,
    split,
    truncate,
    unsolicited_line,
)
from teststand.sim.instrument import SimInstrument

log = logging.getLogger("teststand.sim")

#: Bits on the wire per byte for 8N1 framing.
BITS_PER_BYTE = 10


class LineSplitter:
    """Cut a byte stream into command lines at CR or LF (any of CR, LF, CRLF, LFCR)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer.extend(data)
        lines: list[bytes] = []
        start = 0
        for index, byte in enumerate(self._buffer):
            if byte in (0x0A, 0x0D):
                if index > start:
                    lines.append(bytes(self._buffer[start:index]))
                start = index + 1
        del self._buffer[:start]
        return lines


class SimServer:
    """Serves one instrument; at most one pty, or a TCP port with any number of clients."""

    def __init__(
        self,
        instrument: SimInstrument,
        faults: Faults | None = None,
        baud: int | None = None,
        latency: float = 0.0,
    ) -> None:
        self.instrument = instrument
        self.faults = faults or Faults()
        self.baud = baud
        self.latency = latency
        self.commands = 0  # commands received since start
        self.replies = 0  # replies sent since start
        self.faulty_replies = 0  # replies (or missing replies) that suffered any fault
        self.fault_counts: Counter[str] = Counter()
        self._history: deque[tuple[bytes, bytes]] = deque(maxlen=16)  # (command, reply line)
        self.address = ""
        self._since_plug = 0
        self._pty: tuple[int, int] | None = None  # (master, slave)
        self._link_dir: str | None = None
        self._tcp: asyncio.Server | None = None
        self._clients: set[asyncio.StreamWriter] = set()
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._replug: asyncio.Task[None] | None = None
        self._on_unplug: list[Callable[[], None]] = []
        self._splitter = LineSplitter()

    # -- serving ---------------------------------------------------------------------------
    async def start_pty(self, directory: str | None = None) -> str:
        """Open a pty and return the stable path (a symlink) a client opens."""
        self._link_dir = directory or tempfile.mkdtemp(prefix="teststand-sim-")
        self.address = os.path.join(self._link_dir, self.instrument.kind)
        self._plug_pty()
        self._worker = asyncio.create_task(self._serve_pty_lines())
        return self.address

    async def start_tcp(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on host:port (port 0 picks a free one) and return `host:port`."""
        self._tcp = await asyncio.start_server(self._serve_client, host, port)
        bound = self._tcp.sockets[0].getsockname()
        self.address = f"{bound[0]}:{bound[1]}"
        return self.address

    async def stop(self) -> None:
        self.instrument.close()
        for task in (self._worker, self._replug):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._tcp is not None:
            self._tcp.close()
            for writer in list(self._clients):
                writer.close()
            await self._tcp.wait_closed()
        self._unplug_pty()
        if self._link_dir is not None:
            shutil.rmtree(self._link_dir, ignore_errors=True)

    # -- control ---------------------------------------------------------------------------
    def set_faults(self, spec: str) -> None:
        self.faults.update(spec)

    def reset(self) -> None:
        """Clear a hang, as a power cycle of the interface would; instrument state is kept."""
        self.faults.hang = False
        self.faults.hang_after = None

    def unplug(self) -> None:
        """Pull the cable now; it is plugged back in after the `replug` delay."""
        if self._tcp is not None:
            for writer in list(self._clients):
                writer.close()
        elif self._pty is not None:
            loop = asyncio.get_running_loop()
            self._unplug_pty()
            self._replug = loop.create_task(self._plug_later(self.faults.replug))
        self._since_plug = 0
        for callback in self._on_unplug:
            callback()

    # -- the command path ------------------------------------------------------------------
    async def process(self, command: bytes) -> list[tuple[float, bytes]]:
        """Answer one command line: the writes to make, each after its pause (s), in order.

        An empty list sends nothing. Faults shape the writes (see `faults.py`); `fault_counts`
        counts each fault applied and `faulty_replies` the replies that had any.
        """
        self.commands += 1
        self._since_plug += 1
        faults = self.faults
        if faults.hang:
            return []
        self.instrument.local = faults.local
        text = command.decode("ascii", errors="replace")
        try:
            reply = self.instrument.handle(text)
            line = None if reply is None else reply.encode("ascii")
        except Exception:  # a simulator bug must not kill the link
            log.exception("%s: simulator failed on %r", self.instrument.kind, text)
            line = None
        if faults.hang_after is not None and self.commands >= faults.hang_after:
            faults.hang = True
        # Bytes on the wire both ways; the command's terminator is taken to be as long as the
        # instrument's reply terminator (the splitter does not keep it).
        terminator = self.instrument.reply_terminator
        wire = len(command) + len(terminator) + (len(line) + len(terminator) if line else 0)
        pause = faults.delay + self.latency
        if self.baud:
            pause += wire * BITS_PER_BYTE / self.baud
        if pause > 0:
            await asyncio.sleep(pause)
        if line is not None:
            self._history.append((command, line))
        return self._deliver(command, line)

    def _deliver(self, command: bytes, line: bytes | None) -> list[tuple[float, bytes]]:
        faults, rng = self.faults, self.faults.rng
        applied: list[str] = []
        if line is not None and faults.chance(faults.drop):
            applied.append("drop")
            line = None
        if line is not None and faults.misread:
            misread_line = misread(line)
            if misread_line is not None:
                applied.append("misread")
                line, faults.misread = misread_line, faults.misread - 1
        for name, damage in (("garble", garble), ("noise", add_noise), ("truncate", truncate)):
            if line is not None and faults.chance(getattr(faults, name)):
                applied.append(name)
                line = damage(line, rng)
        lines = [] if line is None else [line]
        if line is not None and faults.chance(faults.duplicate):
            applied.append("duplicate")
            lines.append(line)
        if faults.chance(faults.unsolicited):
            applied.append("unsolicited")
            extra = unsolicited_line(self._history, command, rng)
            lines.insert(rng.choice((0, len(lines))), extra)
        data = b"".join(each + self.instrument.reply_terminator for each in lines)
        if line is not None:
            self.replies += 1
        if data and faults.chance(faults.split):
            applied.append("split")
            writes = split(data, rng, faults.split_pause)
        else:
            writes = [(0.0, data)] if data else []
        if applied:
            self.faulty_replies += 1
            self.fault_counts.update(applied)
        return writes

    def _cable_pulled(self) -> bool:
        after = self.faults.disconnect_after
        return after is not None and self._since_plug >= after

    # -- pty -------------------------------------------------------------------------------
    def _plug_pty(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._pty = (master, slave)
        self._splitter = LineSplitter()
        assert self._link_dir is not None
        temporary = self.address + ".new"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        os.symlink(os.ttyname(slave), temporary)
        os.replace(temporary, self.address)
        asyncio.get_running_loop().add_reader(master, self._read_pty, master)

    def _unplug_pty(self) -> None:
        if self._pty is None:
            return
        master, slave = self._pty
        self._pty = None
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(master)
        for fd in (master, slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.address)

    async def _plug_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        self._plug_pty()

    def _read_pty(self, master: int) -> None:
        try:
            data = os.read(master, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            return
        for line in self._splitter.feed(data):
            self._queue.put_nowait(line)

    async def _serve_pty_lines(self) -> None:
        while True:
            command = await self._queue.get()
            pty = self._pty
            for pause, data in await self.process(command):
                if pause:
                    await asyncio.sleep(pause)
                if pty is not None and pty is self._pty:
                    await _write_fd(pty[0], data)
            if self._cable_pulled():
                await asyncio.sleep(0.02)  # let the client read the last reply first
                self._queue = asyncio.Queue()
                self.unplug()

    # -- tcp -------------------------------------------------------------------------------
    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._clients.add(writer)
        splitter = LineSplitter()
        try:
            while not writer.is_closing():
                data = await reader.read(4096)
                if not data:
                    break
                for command in splitter.feed(data):
                    for pause, reply in await self.process(command):
                        if pause:
                            await asyncio.sleep(pause)
                        if writer.is_closing():
                            break
                        writer.write(reply)
                        await writer.drain()
                    if writer.is_closing():
                        break
                    if self._cable_pulled():
                        self.unplug()
                        break
        except (ConnectionError, OSError):
            pass
        finally:
            self._clients.discard(writer)
            writer.close()


async def _write_fd(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            await asyncio.sleep(0.001)
            continue
        except OSError:
            return  # pty closed under us: the reply is lost, as on a pulled cable
        view = view[written:]
