"""HMP replies: a line of `;`-separated replies that starts with the selected channel's number."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from teststand.devices._numbers import parse_integer
from teststand.devices.scpi import parse_bool, parse_float
from teststand.errors import ReplyFormatError

T = TypeVar("T")
#: Voltages and currents as the simulator writes them (the manual's examples `12.000`, `0.1000`);
#: checked with `strict_formats`.
VOLTS = re.compile(r"[0-9]{1,2}\.[0-9]{3}")
AMPS = re.compile(r"[0-9]{1,2}\.[0-9]{4}")


@dataclass(frozen=True)
class ChannelSettings:
    voltage: float  # V, set voltage
    current_limit: float  # A
    armed: bool  # OUTP:SEL: delivers when the master output is on too


@dataclass(frozen=True)
class Measurement:
    voltage: float  # V
    current: float  # A


def parse_measurement(replies: list[str], strict: bool = False) -> Measurement:
    """The replies to `:MEAS:VOLT?;:MEAS:CURR?`."""
    volts, amps = _exactly(replies, 2)
    return Measurement(_volts(volts, strict), _amps(amps, strict))


def parse_settings(replies: list[str], strict: bool = False) -> ChannelSettings:
    """The replies to `:VOLT?;:CURR?;:OUTP:SEL?`."""
    volts, amps, armed = _exactly(replies, 3)
    return ChannelSettings(_volts(volts, strict), _amps(amps, strict), parse_bool(armed))


def _volts(text: str, strict: bool) -> float:
    return parse_float(text, VOLTS if strict else None)


def _amps(text: str, strict: bool) -> float:
    return parse_float(text, AMPS if strict else None)


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
