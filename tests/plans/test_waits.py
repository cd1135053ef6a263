"""How plans wait on the RunEngine's loop (`call`, `read_now`) and name what they waited for."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

import pytest
from bluesky import Msg

from teststand.plans.common import _named, bring_to_zero, call, read_now


class Named:
    name = "hv-channels-0"

    async def on(self) -> None: ...


class Anonymous:
    async def on(self) -> None: ...


class CallableObject:
    def __repr__(self) -> str:
        return "<a callable object>"

    async def __call__(self) -> None: ...


def test_a_waited_coroutine_is_named_by_its_function_and_its_devices_name() -> None:
    assert _named(partial(bring_to_zero, [])) == "bring_to_zero"
    assert _named(Named().on) == "hv-channels-0.on"
    assert _named(Anonymous().on) == "on"
    assert _named(CallableObject()) == "<a callable object>"


def test_read_now_reads_again_after_a_rewind() -> None:
    """bluesky hands a rewound plan None for the message it interrupted."""
    device = object()
    plan = read_now(device)
    assert next(plan) == Msg("read", device)
    assert plan.send(None) == Msg("read", device)
    reading = {"x": {"value": 1.0, "timestamp": 0.0}}
    with pytest.raises(StopIteration) as stop:
        plan.send(reading)
    assert stop.value.value is reading


def test_call_awaits_again_after_a_rewind_and_returns_the_result() -> None:
    async def factory() -> int:
        return 5

    loop = asyncio.new_event_loop()
    try:
        done: asyncio.Future[Any] = loop.create_future()
        done.set_result(5)
        plan = call(factory)
        first = next(plan)
        assert (first.command, first.obj, len(first.args[0])) == ("wait_for", None, 1)
        assert plan.send(None).command == "wait_for"
        with pytest.raises(StopIteration) as stop:
            plan.send([done])
        assert stop.value.value == 5
    finally:
        loop.close()
