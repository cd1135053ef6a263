"""HMP replies: a line of `;`-separated replies that starts with the selected channel's number."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from teststand.devices._numbers import parse_integer
from teststand.devices.scpi import parse_bool, parse_float
from teststand.errors import ReplyFormatError

T = TypeVar("T")


@dataclass(frozen=True)
class ChannelSettings:
    voltage: float  # V, set voltage
    current_limit: float  # A
    armed: bool  # OUTP:SEL: delivers when the master output is on too


@dataclass(frozen=True)
class Measurement:
    voltage: float  # V
    current: float  # A


def parse_measurement(replies: list[str]) -> Measurement:
    """The replies to `:MEAS:VOLT?;:MEAS:CURR?`."""
    volts, amps = _exactly(replies, 2)
    return Measurement(parse_float(volts), parse_float(amps))


def parse_settings(replies: list[str]) -> ChannelSettings:
    """The replies to `:VOLT?;:CURR?;:OUTP:SEL?`."""
    volts, amps, armed = _exactly(replies, 3)
    return ChannelSettings(parse_float(volts), parse_float(amps), parse_bool(armed))


def parse_selected(
    text: str, count: int, channel: int, parse: Callable[[list[str]], T]
) -> tuple[int, T | None]:
    """`<selected channel>;<reply 1>;…;<reply count>`: the selected channel's number, and the
    replies parsed when it is `channel` (None when another channel is selected)."""
    parts = text.split(";")
    if len(parts) != count + 1:
        raise ReplyFormatError(f"expected {count + 1} replies separated by ';', got {text!r}")
    selected = parse_integer(parts[0], "channel number")
    return selected, parse(parts[1:]) if selected == channel else None


def _exactly(replies: list[str], count: int) -> list[str]:
    if len(replies) != count:
        raise ReplyFormatError(f"expected {count} replies, got {replies!r}")
    return replies
