"""caproto channels for served signals: one per signal type, with the writing client known.

caproto calls `auth_write(hostname, username, …, user_address=(host, port))` for every client
put; the address of the client's TCP circuit tells two processes of one user on one host apart
(each process has its own circuit). It is kept in a context variable for the put's task, so the
put handler (`verify_value`) knows who writes.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from caproto import (
    ChannelChar,
    ChannelData,
    ChannelDouble,
    ChannelEnum,
    ChannelInteger,
    ChannelType,
)

#: Longest string a text PV holds, in bytes (a CA char array reported as a string).
TEXT_LENGTH = 512
#: Text PVs are UTF-8, as libca's clients (aioca, pyepics) decode char arrays; "°C" is in many
#: messages.
ENCODING = "utf-8"
BOOL_STATES = ("False", "True")


@dataclass(frozen=True)
class Writer:
    """Who is writing: the client's host and user as CA reports them, and its circuit address."""

    host: str
    user: str
    address: str  # "host:port" of the client's TCP circuit: one per client process

    def __str__(self) -> str:
        return f"{self.user}@{self.host} ({self.address})"


WRITER: ContextVar[Writer | None] = ContextVar("teststand_ioc_writer", default=None)

#: Runs a client's put: gets the value as the channel holds it, returns the value to store.
PutHandler = Callable[[Any], Awaitable[Any]]


class _Served:
    """Mixin: remember the writing client; route client puts to `on_put` (None: read-only)."""

    on_put: PutHandler | None = None

    async def auth_write(
        self,
        hostname: str,
        username: str,
        data: Any,
        data_type: Any,
        metadata: Any,
        *,
        flags: int = 0,
        user_address: tuple[str, int] | None = None,
    ) -> Any:
        address = f"{user_address[0]}:{user_address[1]}" if user_address else "?"
        token = WRITER.set(Writer(hostname, username, address))
        try:
            return await super().auth_write(  # type: ignore[misc]
                hostname,
                username,
                data,
                data_type,
                metadata,
                flags=flags,
                user_address=user_address,
            )
        finally:
            WRITER.reset(token)

    async def verify_value(self, data: Any) -> Any:
        if self.on_put is None:
            raise PermissionError("read-only PV")
        return await self.on_put(data)


class ServedDouble(_Served, ChannelDouble):  # type: ignore[misc]
    pass


class ServedInteger(_Served, ChannelInteger):  # type: ignore[misc]
    pass


class ServedEnum(_Served, ChannelEnum):  # type: ignore[misc]
    pass


class ServedText(_Served, ChannelChar):  # type: ignore[misc]
    pass


def text_channel(value: str = "") -> ServedText:
    """A long string: a CA char array (`caget -S`, ophyd-async reads it as a str)."""
    return ServedText(value=clip(value), max_length=TEXT_LENGTH, string_encoding=ENCODING)


def clip(text: str) -> str:
    """`text` cut to fit a text PV (its encoding, the terminating null)."""
    return text.encode(ENCODING)[: TEXT_LENGTH - 1].decode(ENCODING, errors="ignore")


def decode(raw: Any) -> str:
    """A client's put to a text PV as a str."""
    return raw.decode(ENCODING, errors="replace") if isinstance(raw, bytes) else str(raw)


def make_channel(datatype: type, value: Any, metadata: dict[str, Any]) -> ChannelData:
    """The channel of a signal of `datatype` holding `value`, with EGU, PREC and choices."""
    units = metadata.get("units") or ""
    if datatype is bool:
        return ServedEnum(enum_strings=BOOL_STATES, value=to_channel(bool, value))
    if isinstance(datatype, type) and issubclass(datatype, enum.Enum):
        choices = tuple(str(member.value) for member in datatype)
        return ServedEnum(enum_strings=choices, value=to_channel(datatype, value))
    if datatype is int:
        return ServedInteger(value=int(value), units=units)
    if datatype is float:
        precision = metadata.get("precision")
        return ServedDouble(
            value=float(value), units=units, precision=3 if precision is None else int(precision)
        )
    if datatype is str:
        return text_channel(str(value))
    raise TypeError(f"no PV type for signals of {datatype!r}")


def to_channel(datatype: type, value: Any) -> Any:
    """A signal's value as its channel stores it."""
    if datatype is bool:
        return BOOL_STATES[bool(value)]
    if isinstance(value, enum.Enum):
        return str(value.value)
    return value


def to_signal(datatype: type, value: Any) -> Any:
    """A channel's value (as caproto hands it to a put) as the signal's datatype."""
    if isinstance(value, bytes):
        value = decode(value)
    if datatype is bool:
        return value == "True" if isinstance(value, str) else bool(value)
    return datatype(value)


def is_text(channel: ChannelData) -> bool:
    return bool(channel.data_type == ChannelType.CHAR)
