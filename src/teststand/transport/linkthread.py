"""Links driven from a thread of their own, for a process whose event loop is busy with other
work (the IOC serving many Channel Access clients).

A `Transport` made inside `links_in_thread()` runs its exchanges (and its close) on the link
thread's event loop: the commands queued on a link follow each other at the link's pace, with
no wait for the process's loop between one reply and the next command. Callers await them from
their own loop as before; a cancelled caller cancels the exchange on the link thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

T = TypeVar("T")
#: The loop the transports made now run their exchanges on (None: the caller's loop).
LINK_LOOP: ContextVar[asyncio.AbstractEventLoop | None] = ContextVar("link_loop", default=None)
_started: asyncio.AbstractEventLoop | None = None
_starting = threading.Lock()


def link_loop() -> asyncio.AbstractEventLoop:
    """The process's link thread's event loop (started on first use; a daemon thread)."""
    global _started
    with _starting:
        if _started is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="teststand-links", daemon=True).start()
            _started = loop
        return _started


@contextmanager
def links_in_thread() -> Iterator[None]:
    """Transports made in this block (and in tasks started from it) use the link thread."""
    token = LINK_LOOP.set(link_loop())
    try:
        yield
    finally:
        LINK_LOOP.reset(token)


async def run_on(home: asyncio.AbstractEventLoop | None, coroutine: Coroutine[Any, Any, T]) -> T:
    """Await `coroutine` on `home` (None, or the running loop: here)."""
    if home is None or home is asyncio.get_running_loop():
        return await coroutine
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, home))


__all__ = ["LINK_LOOP", "link_loop", "links_in_thread", "run_on"]
