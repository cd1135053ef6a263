"""What collectors and processing devices share as caproto servers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from caproto import ChannelType

#: pvproperty arguments of a text PV (a char array that `caget -S` and aioca read as a string).
TEXT: dict[str, Any] = {"dtype": ChannelType.CHAR, "max_length": 512, "string_encoding": "latin-1"}


def ready_hook(on_ready: Callable[[], None] | None) -> Callable[[Any], Awaitable[None]]:
    """caproto's `startup_hook`: `on_ready()` once the server's sockets are bound."""

    async def hook(async_lib: Any) -> None:
        if on_ready is not None:
            on_ready()

    return hook
