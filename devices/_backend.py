"""Signals over a protocol client: an ophyd-async backend that calls async read/write functions.

A custom backend rather than soft signals with getters: in mock mode ophyd-async swaps it for a
plain soft backend, so a dry run never touches the client, and errors of the link surface as
typed exceptions on read instead of being swallowed by a poll loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Generic, Protocol, TypeVar

from bluesky.protocols import Reading
from event_model import DataKey
from ophyd_async.core import (
    Callback,
    Device,
    DeviceConnector,
    SignalBackend,
    SignalDatatypeT,
    SignalMetadata,
    SignalR,
    SignalRW,
    make_datakey,
)

log = logging.getLogger("teststand.devices")
T = TypeVar("T")

Read = Callable[[], Awaitable[SignalDatatypeT]]
Write = Callable[[SignalDatatypeT], Awaitable[None]]


class ClientBackend(SignalBackend[SignalDatatypeT]):
    """Reads and writes one quantity through a protocol client's async functions."""

    def __init__(
        self,
        datatype: type[SignalDatatypeT],
        read: Read[SignalDatatypeT],
        write: Write[SignalDatatypeT] | None = None,
        *,
        source: str,
        units: str | None = None,
        precision: int | None = None,
        poll_period: float = 0.25,
    ) -> None:
        self._read = read
        self._write = write
        self._source = source
        self._metadata: SignalMetadata = {}
        if units is not None:
            self._metadata["units"] = units
        if precision is not None:
            self._metadata["precision"] = precision
        self._poll_period = poll_period
        self._poll: asyncio.Task[None] | None = None
        self._callback: Callback[Reading[SignalDatatypeT]] | None = None
        self._setpoint: SignalDatatypeT | None = None
        super().__init__(datatype)

    def source(self, name: str, read: bool) -> str:
        return self._source

    @property
    def metadata(self) -> SignalMetadata:
        """Units and precision, as given (the data key adds the rest)."""
        return self._metadata

    async def connect(self, timeout: float) -> None:
        """The owning device's connector opens the client; nothing to do per signal."""

    async def put(self, value: SignalDatatypeT | None) -> None:
        if self._write is None:
            raise PermissionError(f"{self._source} is read-only")
        if value is None:
            raise ValueError(f"{self._source} needs a value to write")
        await self._write(value)
        self._setpoint = value

    async def get_value(self) -> SignalDatatypeT:
        reading = await self.get_reading()
        return reading["value"]

    async def get_reading(self) -> Reading[SignalDatatypeT]:
        """A fresh read. While the signal is monitored its subscribers (and ophyd-async's cache)
        get it too: a cached read is never older than the last fresh one (a move judged settled
        on a fresh read, then read from the cache, showed a value from before it had settled)."""
        reading: Reading[SignalDatatypeT] = {
            "value": await self._read(),
            "timestamp": time.time(),
            "alarm_severity": 0,
        }
        if self._callback is not None:
            self._callback(reading)
        return reading

    async def get_setpoint(self) -> SignalDatatypeT:
        return self._setpoint if self._setpoint is not None else await self._read()

    async def get_datakey(self, source: str) -> DataKey:
        assert self.datatype is not None
        return make_datakey(self.datatype, await self._read(), source, self._metadata)

    def set_callback(self, callback: Callback[Reading[SignalDatatypeT]] | None) -> None:
        if self._poll is not None:
            self._poll.cancel()
            self._poll = None
        self._callback = callback
        if callback is not None:
            self._poll = asyncio.create_task(self._monitor())

    async def _monitor(self) -> None:
        """Poll (each read calls back); a failure is logged once until it changes or the reads
        recover (a closed instrument must not flood the session log every poll period)."""
        failing: str | None = None
        while True:
            try:
                await self.get_reading()
            except Exception as exc:  # keep monitoring, but never silently
                if str(exc) != failing:
                    log.error("%s: monitor read failed: %s (logged once)", self._source, exc)
                failing = str(exc)
            else:
                if failing is not None:
                    log.info("%s: monitor reads again", self._source)
                failing = None
            await asyncio.sleep(self._poll_period)


def client_signal_r(
    datatype: type[SignalDatatypeT],
    read: Read[SignalDatatypeT],
    *,
    source: str,
    units: str | None = None,
    precision: int | None = None,
) -> SignalR[SignalDatatypeT]:
    backend = ClientBackend(datatype, read, source=source, units=units, precision=precision)
    return SignalR(backend)


def client_signal_rw(
    datatype: type[SignalDatatypeT],
    read: Read[SignalDatatypeT],
    write: Write[SignalDatatypeT],
    *,
    source: str,
    units: str | None = None,
    precision: int | None = None,
) -> SignalRW[SignalDatatypeT]:
    backend = ClientBackend(datatype, read, write, source=source, units=units, precision=precision)
    return SignalRW(backend)


#: s between the cancels of a task that goes on: Python 3.11's `asyncio.wait_for` (under every
#: ophyd-async signal read) loses a cancel that arrives as its read completes.
RECANCEL_PERIOD = 0.05


async def cancel_and_wait(task: asyncio.Future[Any]) -> None:
    """Cancel `task` and wait until it has ended, cancelling it again while it goes on (a move's
    ramp that lost its cancel ran on to its deadline, and the safe action's zero waited for it)."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=RECANCEL_PERIOD)
    if not task.cancelled():
        task.exception()  # retrieved: its failure is the cancelled move's, not the caller's


class RampInProgress:
    """The task moving an HV channel, if any: a zero, or a new move from another client,
    cancels it first (a suspended plan's step would otherwise write its voltage again)."""

    def __init__(self) -> None:
        self._task: asyncio.Task[Any] | None = None

    @staticmethod
    def of(device: Device) -> RampInProgress | None:
        """The ramp of `device`'s HV channel (a slot's channel, or the device itself), if any."""
        ramp = getattr(getattr(device, "hv_channel", device), "ramp_in_progress", None)
        return ramp if isinstance(ramp, RampInProgress) else None

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """The current task is the channel's move while the block runs."""
        task = asyncio.current_task()
        self._task = task
        try:
            yield
        finally:
            if self._task is task:
                self._task = None

    async def cancel(self) -> None:
        """Cancel the move in progress (never the caller's own) and wait until it has ended."""
        task = self._task
        if task is not None and task is not asyncio.current_task():
            await cancel_and_wait(task)


class SingleFlight(Generic[T]):
    """Concurrent callers of one fetch share a single round trip.

    When bluesky reads a device it reads every signal at once; the eight channel voltages of an
    HV supply then cost one group command (`CH:8`) instead of eight.
    """

    def __init__(self, fetch: Callable[[], Awaitable[T]]) -> None:
        self._fetch = fetch
        self._pending: asyncio.Future[T] | None = None

    async def __call__(self) -> T:
        if self._pending is None:
            self._pending = asyncio.ensure_future(self._fetch())
            self._pending.add_done_callback(self._clear)
        return await asyncio.shield(self._pending)

    def _clear(self, future: asyncio.Future[T]) -> None:
        if future is self._pending:
            self._pending = None


class Client(Protocol):
    """What a client connector opens: a protocol client owning one transport."""

    name: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...


class ClientConnector(DeviceConnector):
    """Opens the device's protocol client on a real connect; a mock connect never touches it.

    With `adopt_name`, a client the device made for itself takes the device's name (given by
    `init_devices()` after construction), so link errors name the device the user knows.
    """

    def __init__(self, client: Client, *, adopt_name: bool = False) -> None:
        self.client = client
        self.adopt_name = adopt_name

    async def connect_real(self, device: Device, timeout: float, force_reconnect: bool) -> None:
        if self.adopt_name and device.name:
            self.client.name = device.name
        await self.client.open()
        await super().connect_real(device, timeout, force_reconnect)
