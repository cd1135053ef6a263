"""The IOC's two event loops: the instruments' (poll loops, puts, safety) and the CA server's.

On one loop, every update to every client (packing, a send per client and batch) ran between
the instruments' replies: with 20 clients monitoring every PV, a reply waited for a burst of
sends, and the poll loops ran a fifth slower than with one client. The server's loop runs in a
thread of its own (`LoopThread`): it shares the interpreter, but a reply now waits at most for
the interpreter's switch interval (5 ms), not for a burst. Channels cross over with `call_on`
(a client's put runs on the instruments' loop) and `post_on` (a value is written on the
server's loop, in order, without waiting).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

log = logging.getLogger("teststand.ioc")
T = TypeVar("T")
JOIN_TIMEOUT = 10.0


async def call_on(loop: asyncio.AbstractEventLoop, coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` on `loop` (another thread's) and await its result here; a cancel here
    cancels it there."""
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, loop))


def post_on(loop: asyncio.AbstractEventLoop, coroutine: Coroutine[Any, Any, Any]) -> None:
    """Run `coroutine` on `loop` without waiting, after those posted before it; a failure is
    logged. Nothing runs once the loop is closed (the server has stopped)."""
    try:
        future = asyncio.run_coroutine_threadsafe(coroutine, loop)
    except RuntimeError:  # the loop is closed
        coroutine.close()
        return
    future.add_done_callback(_log_failure)


def _log_failure(future: concurrent.futures.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("a PV update failed on the server's loop: %r", future.exception())


class LoopThread:
    """An event loop running in a daemon thread of its own until `close()`."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    async def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run `coroutine` on this thread's loop and await its result."""
        return await call_on(self.loop, coroutine)

    async def close(self) -> None:
        """Cancel what still runs on the loop and wait for it; then stop the loop and the
        thread."""
        if self.loop.is_closed():
            return
        if self.loop.is_running():
            await self.call(_cancel_others())
            self.loop.call_soon_threadsafe(self.loop.stop)
        await asyncio.to_thread(self._thread.join, JOIN_TIMEOUT)
        if self._thread.is_alive():
            log.error("the CA server's thread did not stop within %.0f s", JOIN_TIMEOUT)
            return
        self.loop.close()


async def _cancel_others() -> None:
    current = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
