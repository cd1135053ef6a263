"""The transport: one command in flight per link, retry, reconnect, typed errors, counters."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Generator
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Any, TypeVar, overload

from teststand.errors import (
    GarbledReply,
    InstrumentRefused,
    LinkLost,
    PortUnavailable,
    ReplyFormatError,
    ReplyRefused,
    TransportError,
    TransportTimeout,
)
from teststand.transport.links import Link, LinkClosed, SerialLink, TcpLink
from teststand.transport.url import InstrumentURL, parse_url

log = logging.getLogger("teststand.transport")
T = TypeVar("T")
Parser = Callable[[str], T]


@dataclass
class LinkStats:
    """Counters kept per link, for monitoring."""

    exchanges: int = 0
    retries: int = 0
    reconnects: int = 0
    timeouts: int = 0
    garbled: int = 0
    links_lost: int = 0
    refused: int = 0
    #: Times input was found waiting before a command (a late, duplicated or unsolicited line)
    #: or arrived during a stale-reply flush, and the bytes thrown away then.
    discards: int = 0
    bytes_discarded: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    last_round_trip_ms: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


class Transport:
    """Commands and replies over one exclusively owned link.

    `query()` sends one command and reads one reply line; `write()` sends without a reply. Callers
    queue on an asyncio lock, so bytes of two commands never interleave. Only commands marked
    `idempotent=True` are retried automatically (after a timeout, a garbled reply or a lost link).
    """

    def __init__(self, spec: InstrumentURL, link: Link) -> None:
        self.spec = spec
        self.url = spec.url
        self.options = spec.options
        self.name = spec.options.name
        self.stats = LinkStats()
        self.simulator: Any = None  # the RunningSim behind a sim:// URL
        self._link = link
        self._lock = asyncio.Lock()
        # Seconds of line quiet to wait for before the next command: after a timeout or a garbled
        # reply, unread bytes of that exchange may still arrive and must not be read as the next
        # reply. After a timeout a late reply can come any time, so the wait is a whole timeout.
        self._stale = 0.0
        self._closed = False

    async def open(self) -> None:
        await self._link.open()

    async def close(self) -> None:
        self._closed = True
        async with self._lock:
            await self._link.close()
        if self.simulator is not None:
            await asyncio.to_thread(self.simulator.stop)
            self.simulator = None

    @overload
    async def query(
        self, command: str, *, idempotent: bool = ..., timeout: float | None = ...
    ) -> str: ...

    @overload
    async def query(
        self,
        command: str,
        parse: Parser[T],
        *,
        idempotent: bool = ...,
        timeout: float | None = ...,
    ) -> T: ...

    async def query(
        self,
        command: str,
        parse: Parser[Any] | None = None,
        *,
        idempotent: bool = False,
        timeout: float | None = None,
    ) -> Any:
        """Send `command`, read one reply line, and return it parsed by `parse` (or as text).

        `parse` raises `ReplyFormatError` for a reply that does not follow the protocol (retried
        as garbled) and `ReplyRefused` for an error the instrument answered (never retried).
        """
        return await self._exchange(command, parse, idempotent, timeout, expect_reply=True)

    async def write(self, command: str, *, idempotent: bool = False) -> None:
        """Send `command`; no reply is read."""
        await self._exchange(command, None, idempotent, None, expect_reply=False)

    async def _exchange(
        self,
        command: str,
        parse: Parser[Any] | None,
        idempotent: bool,
        timeout: float | None,
        expect_reply: bool,
    ) -> Any:
        if self._closed:
            raise LinkLost("the transport is closed", url=self.url, instrument=self.name)
        attempts = self.options.attempts if idempotent else 1
        async with self._lock:
            for attempt in range(1, attempts + 1):
                try:
                    return await self._attempt(command, parse, timeout, expect_reply)
                except (TransportTimeout, GarbledReply, LinkLost) as exc:
                    if attempt == attempts:
                        raise
                    self.stats.retries += 1
                    delay = self.options.backoff * 2 ** (attempt - 1)
                    log.info(
                        "%s: %s; retry %d/%d in %.2f s",
                        self.url,
                        exc.problem,
                        attempt,
                        attempts - 1,
                        delay,
                    )
                    await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _attempt(
        self, command: str, parse: Parser[Any] | None, timeout: float | None, expect_reply: bool
    ) -> Any:
        link = self._link
        if not link.is_open:
            await self._reconnect(command)
        o = self.options
        try:
            # Whatever is waiting now belongs to no command of ours: a late, duplicated or
            # unsolicited line would otherwise be read as this command's reply.
            if self._stale:
                dropped = await link.flush_input(self._stale)
                self._stale = 0.0
            else:
                dropped = link.discard_waiting()
            if dropped:
                self.stats.discards += 1
                self.stats.bytes_discarded += len(dropped)
                log.debug("%s: discarded waiting input %r", self.url, dropped)
            started = time.perf_counter()
            data = (command + o.write_terminator).encode(o.encoding)
            await link.write(data)
            self.stats.bytes_sent += len(data)
            if not expect_reply:
                log.debug("%s %r (no reply)", self.url, command)
                return None
            raw = await link.read_until(o.read_terminator.encode(), timeout or o.timeout)
            self.stats.bytes_received += len(raw)
        except asyncio.CancelledError:
            # the caller gave up (a pause, a stop): its reply may still come; flush it first
            self._stale = max(self._stale, timeout or o.timeout)
            raise
        except TimeoutError:
            self._stale = timeout or o.timeout
            self.stats.timeouts += 1
            raise self._error(
                TransportTimeout,
                "no reply",
                command,
                hint="check the cable, the baud rate and the terminator",
            ) from None
        except LinkClosed as exc:
            self.stats.links_lost += 1
            await link.close()
            raise self._error(
                LinkLost,
                f"link lost ({exc})",
                command,
                hint="check the cable and the instrument's power",
            ) from None
        elapsed_ms = (time.perf_counter() - started) * 1000
        self.stats.exchanges += 1
        self.stats.last_round_trip_ms = elapsed_ms
        log.debug("%s %r -> %r (%.1f ms)", self.url, command, raw, elapsed_ms)
        return self._decode(command, raw, parse)

    def _decode(self, command: str, raw: bytes, parse: Parser[Any] | None) -> Any:
        try:
            text = raw.decode(self.options.encoding).strip("\r\n")
            return text if parse is None else parse(text)
        except (UnicodeDecodeError, ReplyFormatError) as exc:
            self._stale = max(self._stale, self.options.flush_quiet)
            self.stats.garbled += 1
            raise GarbledReply(
                f"garbled reply {raw!r} ({exc})",
                url=self.url,
                reply=raw,
                instrument=self.name,
                command=command,
                hint="check the baud rate and the cable; electrical noise garbles replies",
            ) from None
        except ReplyRefused as exc:
            self.stats.refused += 1
            raise InstrumentRefused(
                f"the instrument refused the command: {exc}",
                url=self.url,
                code=exc.code,
                instrument=self.name,
                command=command,
            ) from None

    async def _reconnect(self, command: str) -> None:
        try:
            await self._link.open()
        except PortUnavailable as exc:
            raise self._error(
                LinkLost, f"cannot reconnect: {exc.problem}", command, hint=exc.hint
            ) from None
        self.stats.reconnects += 1
        self._stale = 0.0
        log.warning("%s: reconnected", self.url)

    def _error(
        self, cls: type[TransportError], problem: str, command: str, hint: str = ""
    ) -> TransportError:
        return cls(problem, url=self.url, instrument=self.name, command=command, hint=hint)


class Connection:
    """What `connect()` returns: await it for a `Transport`, or use it with `async with`."""

    def __init__(self, url: str, options: dict[str, Any]) -> None:
        self._url = url
        self._options = options
        self._transport: Transport | None = None

    async def _open(self) -> Transport:
        spec = parse_url(self._url, **self._options)
        if spec.scheme == "sim":
            from teststand.transport.simlink import open_simulated

            return await open_simulated(spec, Transport)
        link: Link = TcpLink(spec) if spec.scheme == "tcp" else SerialLink(spec)
        transport = Transport(spec, link)
        await transport.open()
        return transport

    def __await__(self) -> Generator[Any, None, Transport]:
        return self._open().__await__()

    async def __aenter__(self) -> Transport:
        self._transport = await self._open()
        return self._transport

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._transport is not None:
            await self._transport.close()


def connect(url: str, **options: Any) -> Connection:
    """Open the instrument at `url`, exclusively.

    `options` are `LinkOptions` fields (name, terminator, timeout, attempts, baudrate, …) given as
    defaults, usually by the driver; options in the URL's query override them.
    `async with connect(url) as t:` closes the link at the end; `t = await connect(url)` leaves
    closing to the caller (`await t.close()`).
    """
    return Connection(url, options)


__all__ = ["Connection", "LinkStats", "Transport", "connect"]
