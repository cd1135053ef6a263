"""`cancel_and_wait`: a task that loses a cancel (as Python 3.11's `wait_for` can) still ends;
`RampInProgress`: a zero cancels the move in progress, never its own task."""

from __future__ import annotations

import asyncio
import time

from teststand.devices._backend import RampInProgress, cancel_and_wait


async def test_a_task_that_loses_its_first_cancel_still_ends_at_once() -> None:
    lost: list[float] = []

    async def ramp() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:  # the cancel lost, as a read's `wait_for` loses it
            lost.append(time.monotonic())
        await asyncio.sleep(30)  # the ramp goes on to its deadline

    task = asyncio.ensure_future(ramp())
    await asyncio.sleep(0)
    started = time.monotonic()
    await asyncio.wait_for(cancel_and_wait(task), 5)
    assert task.cancelled() and len(lost) == 1
    assert time.monotonic() - started < 1.0


async def test_a_failed_task_is_waited_for_and_its_error_retrieved() -> None:
    async def failing() -> None:
        raise RuntimeError("the ramp failed")

    task = asyncio.ensure_future(failing())
    await asyncio.sleep(0)
    await cancel_and_wait(task)  # no error here: the failure is the cancelled move's
    assert isinstance(task.exception(), RuntimeError)


async def test_a_ramp_in_progress_is_cancelled_by_another_task_and_forgotten_when_it_ends() -> None:
    ramp = RampInProgress()
    entered = asyncio.Event()

    async def move() -> None:
        with ramp.held():
            entered.set()
            await ramp.cancel()  # a move never cancels itself
            await asyncio.sleep(30)

    task = asyncio.ensure_future(move())
    await entered.wait()
    await asyncio.wait_for(ramp.cancel(), 5)
    assert task.cancelled()
    await asyncio.wait_for(ramp.cancel(), 1)  # nothing in progress: returns at once

    async def short_move() -> None:
        with ramp.held():
            await asyncio.sleep(0)

    await short_move()
    other = asyncio.ensure_future(asyncio.sleep(30))
    await ramp.cancel()  # the ended move is forgotten; an unrelated task is untouched
    assert not other.done()
    other.cancel()
