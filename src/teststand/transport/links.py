"""Byte links under the transport: a serial port (also a simulator's pty) and a TCP socket.

A link moves bytes and frames lines; it knows nothing of commands or retries. Reads never block
the event loop: a serial port is read through `loop.add_reader` on its non-blocking descriptor.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import termios
from abc import ABC, abstractmethod

import serial

from teststand.errors import InstrumentBusy, PortUnavailable
from teststand.transport.locking import InstrumentLock, busy_error, processes_holding
from teststand.transport.url import InstrumentURL


class LinkClosed(Exception):
    """The peer went away: EOF, EIO, reset. The transport turns it into LinkLost or reconnects."""


class Link(ABC):
    """A non-blocking file descriptor with line framing, owned exclusively while open.

    Reads wait on `loop.add_reader`; both a serial port and a TCP socket are driven this way.
    """

    def __init__(self, spec: InstrumentURL) -> None:
        self.spec = spec
        self._buffer = bytearray()
        self._lock: InstrumentLock | None = None
        self._fd = -1

    @property
    def is_open(self) -> bool:
        return self._fd >= 0

    @abstractmethod
    async def open(self) -> None: ...

    @abstractmethod
    async def _close_stream(self) -> None: ...

    async def _read_chunk(self) -> bytes:
        """Wait for and return at least one byte; LinkClosed on EOF, hang-up or I/O error."""
        if self._fd < 0:
            raise LinkClosed("closed")
        while True:
            try:
                data = os.read(self._fd, 4096)
            except BlockingIOError:
                await self._readable()
                continue
            except OSError as exc:
                raise LinkClosed(str(exc)) from exc
            if not data:
                raise LinkClosed("end of file")
            return data

    async def _readable(self) -> None:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        loop.add_reader(self._fd, _wake, ready)
        try:
            await ready
        finally:
            loop.remove_reader(self._fd)

    async def write(self, data: bytes) -> None:
        if self._fd < 0:
            raise LinkClosed("closed")
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self._fd, view) :]
            except BlockingIOError:
                await asyncio.sleep(0.001)
            except OSError as exc:
                raise LinkClosed(str(exc)) from exc

    async def close(self) -> None:
        try:
            await self._close_stream()
        finally:
            self._buffer.clear()
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def _take_lock(self, key: str) -> None:
        if not self.spec.options.lock:
            return
        lock = InstrumentLock(key, self.spec.url, self.spec.options.name)
        lock.acquire()
        self._lock = lock

    async def read_until(self, terminator: bytes, timeout: float) -> bytes:
        """Bytes up to and including `terminator`; TimeoutError after `timeout` seconds."""
        async with asyncio.timeout(timeout):
            while True:
                index = self._buffer.find(terminator)
                if index >= 0:
                    end = index + len(terminator)
                    line = bytes(self._buffer[:end])
                    del self._buffer[:end]
                    return line
                self._buffer.extend(await self._read_chunk())

    def discard_waiting(self) -> bytes:
        """Discard and return the input waiting now (buffered or unread), without waiting."""
        discarded = bytes(self._buffer)
        self._buffer.clear()
        while self._fd >= 0:
            try:
                data = os.read(self._fd, 4096)
            except BlockingIOError:
                break
            except OSError as exc:
                raise LinkClosed(str(exc)) from exc
            if not data:
                raise LinkClosed("end of file")
            discarded += data
        return discarded

    async def flush_input(self, quiet: float) -> bytes:
        """Discard buffered input and whatever arrives until the line is quiet for `quiet` s."""
        discarded = bytes(self._buffer)
        self._buffer.clear()
        while True:
            try:
                async with asyncio.timeout(quiet):
                    discarded += await self._read_chunk()
            except TimeoutError:
                return discarded


class SerialLink(Link):
    """A serial port (pyserial for the line settings, the raw descriptor for async I/O)."""

    def __init__(self, spec: InstrumentURL) -> None:
        super().__init__(spec)
        self._serial: serial.Serial | None = None

    async def open(self) -> None:
        self._serial = await asyncio.to_thread(self._open_sync)
        self._fd = self._serial.fileno()
        os.set_blocking(self._fd, False)
        # pyserial leaves VMIN=0, where a read of 0 bytes means "no data"; with VMIN=1 a
        # non-blocking read says EAGAIN for no data, and 0 bytes or EIO only on hang-up.
        attributes = termios.tcgetattr(self._fd)
        attributes[6][termios.VMIN], attributes[6][termios.VTIME] = 1, 0
        termios.tcsetattr(self._fd, termios.TCSANOW, attributes)
        self._serial.reset_input_buffer()

    def _open_sync(self) -> serial.Serial:
        path = self.spec.target
        url = self.spec.url
        name = self.spec.options.name
        if not os.path.exists(path):
            raise PortUnavailable(
                f"device node {path} does not exist",
                url=url,
                instrument=name,
                hint="check the cable and the path (ls -l /dev/serial/by-id/ lists USB adapters)",
            )
        if not os.access(path, os.R_OK | os.W_OK):
            raise PortUnavailable(
                f"permission denied on {path}",
                url=url,
                instrument=name,
                hint="add your user to the device's group (often dialout) and log in again",
            )
        self._take_lock(os.path.realpath(path))
        try:
            return self._open_port(path)
        except BaseException:
            if self._lock is not None:
                self._lock.release()
                self._lock = None
            raise

    def _open_port(self, path: str) -> serial.Serial:
        o = self.spec.options
        try:
            return serial.Serial(
                port=path,
                baudrate=o.baudrate,
                bytesize=o.bytesize,
                parity=o.parity,
                stopbits=o.stopbits,
                xonxoff=o.xonxoff,
                rtscts=o.rtscts,
                exclusive=o.lock,
            )
        except serial.SerialException as exc:
            raise self._open_error(path, exc) from exc

    def _open_error(self, path: str, exc: serial.SerialException) -> Exception:
        url, name = self.spec.url, self.spec.options.name
        if "exclusively lock" in str(exc) or getattr(exc, "errno", None) == errno.EBUSY:
            others = [(p, c) for p, c in processes_holding(path) if p != os.getpid()]
            pid, command = others[0] if others else (None, "a program that does not use teststand")
            return busy_error(url, name, pid, command)
        if getattr(exc, "errno", None) == errno.EACCES:
            return PortUnavailable(f"permission denied on {path}", url=url, instrument=name)
        return PortUnavailable(
            f"cannot open {path}: {exc}", url=url, instrument=name, hint="check the cable"
        )

    async def _close_stream(self) -> None:
        if self._serial is None:
            return
        port, self._serial = self._serial, None
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self._fd)
        with contextlib.suppress(Exception):
            port.close()
        self._fd = -1


def _wake(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)


class TcpLink(Link):
    """A raw TCP socket (CAEN on port 1470, SCPI on 5025, a simulator with --tcp)."""

    def __init__(self, spec: InstrumentURL) -> None:
        super().__init__(spec)
        self._socket: socket.socket | None = None

    async def open(self) -> None:
        host, port = self.spec.host_port
        o = self.spec.options
        self._take_lock(f"tcp-{host}-{port}")
        try:
            async with asyncio.timeout(o.connect_timeout):
                self._socket = await self._connect(host, port)
        except (OSError, TimeoutError) as exc:
            if self._lock is not None:
                self._lock.release()
                self._lock = None
            raise PortUnavailable(
                f"cannot connect to {host}:{port}: {exc or 'timed out'}",
                url=self.spec.url,
                instrument=o.name,
                hint="check that the instrument is on, its address is right and the network is up",
            ) from exc
        self._fd = self._socket.fileno()

    @staticmethod
    async def _connect(host: str, port: int) -> socket.socket:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            await loop.sock_connect(sock, address)
        except BaseException:
            sock.close()
            raise
        return sock

    async def _close_stream(self) -> None:
        sock, self._socket = self._socket, None
        if sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._fd)
            sock.close()
        self._fd = -1


__all__ = ["InstrumentBusy", "Link", "LinkClosed", "SerialLink", "TcpLink"]
