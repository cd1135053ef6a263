"""The IOC's two loops: writes posted in order, a cancel crossing over, nothing after close."""

from __future__ import annotations

import asyncio
import threading

import pytest

from teststand.app.ioc.loops import LoopThread, post_on


async def test_posted_coroutines_run_in_order_on_the_threads_loop() -> None:
    server = LoopThread("test-server")
    seen: list[tuple[int, str]] = []

    async def append(index: int) -> None:
        seen.append((index, threading.current_thread().name))

    async def snapshot() -> list[tuple[int, str]]:
        return list(seen)

    try:
        for index in range(500):
            post_on(server.loop, append(index))
        done = await server.call(snapshot())
    finally:
        await server.close()
    assert [index for index, _ in done] == list(range(500))
    assert {name for _, name in done} == {"test-server"}


async def test_a_cancel_here_cancels_the_call_there() -> None:
    server = LoopThread("test-server")
    started, cancelled = threading.Event(), threading.Event()

    async def wait_forever() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    try:
        call = asyncio.ensure_future(server.call(wait_forever()))
        assert await asyncio.to_thread(started.wait, 5)
        call.cancel()
        assert await asyncio.to_thread(cancelled.wait, 5)
    finally:
        await server.close()
    assert server.loop.is_closed()


@pytest.mark.filterwarnings("error")  # a coroutine never awaited warns: the test fails
async def test_nothing_runs_once_the_loop_is_closed() -> None:
    server = LoopThread("test-server")
    await server.close()
    ran: list[int] = []

    async def append() -> None:
        ran.append(1)

    post_on(server.loop, append())
    await asyncio.sleep(0.05)
    assert ran == []
