"""The coldbox line protocol: `get NAME` -> `NAME = VALUE`, `set`/`cmd` -> `OK`, errors `ERR …`."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from teststand.devices._numbers import parse_number
from teststand.errors import ReplyFormatError, ReplyRefused

_ERROR = re.compile(r"ERR ([\x20-\x7e]+)")
#: What to do about the refusals a user can cause, by the reason the box gives.
ADVICE = {
    "local control": "the coldbox is in LOCAL control; switch it to remote at its panel and retry",
    "interlock tripped": "close the lid and clear the interlock, then power the TECs on",
    "out of range": "give a set point within -40..40 °C",
}


def _checked(text: str) -> str:
    if not (text.isascii() and text.isprintable()):
        raise ReplyFormatError(f"not a coldbox reply: {text!r}")
    error = _ERROR.fullmatch(text)
    if error:
        reason = error[1]
        advice = next((a for r, a in ADVICE.items() if reason.startswith(r)), "")
        raise ReplyRefused("ERR", f"{reason}: {advice}" if advice else reason)
    return text


def parse_value(text: str, name: str) -> str:
    """The VALUE of `NAME = VALUE`; a reply naming another quantity is garbled."""
    name_part, separator, value = _checked(text).partition(" = ")
    if not separator or name_part.lower() != name.lower() or not value:
        raise ReplyFormatError(f"expected '{name} = VALUE', got {text!r}")
    return value


#: Decimals of each numeric reading, as the protocol reference fixes them (sim/README.md).
DECIMALS = {"Temp": 2, "Temp_Set": 2, "Temp_Air": 2, "Temp_W": 2, "RH": 2, "DP": 2, "Flow": 1}


def parse_reading(value: str, name: str) -> float:
    """One numeric value of `name`; one with other decimals than the reference's is garbled."""
    decimals = DECIMALS.get(name)
    if decimals is not None and not re.fullmatch(rf"-?[0-9]+\.[0-9]{{{decimals}}}", value):
        raise ReplyFormatError(f"expected {name} with {decimals} decimals, got {value!r}")
    return parse_number(value, name)


def number_parser(name: str) -> Callable[[str], float]:
    """A parser for a numeric reading such as `Temp = -12.34`."""
    return lambda text: parse_reading(parse_value(text, name), name)


def numbers_parser(name: str, count: int) -> Callable[[str], list[float]]:
    """A parser for a per-TEC list such as `Temp = -19.86,-19.80,…` (channel 0 = all)."""

    def parse(text: str) -> list[float]:
        values = [parse_reading(v, name) for v in parse_value(text, name).split(",")]
        if len(values) != count:
            raise ReplyFormatError(f"expected {count} values of {name}, got {text!r}")
        return values

    return parse


def flag_parser(name: str, true: str, false: str) -> Callable[[str], bool]:
    """A parser for a two-state reading such as `Lid = closed` or `valve0 = on`."""

    def parse(text: str) -> bool:
        value = parse_value(text, name)
        if value not in (true, false):
            raise ReplyFormatError(f"expected {name} {true} or {false}, got {text!r}")
        return value == true

    return parse


def parse_ok(text: str) -> None:
    if _checked(text) != "OK":
        raise ReplyFormatError(f"expected OK, got {text!r}")


CHANNELS = 8
#: The fields of `get Status`, in the order the box sends them.
STATUS_FIELDS = (
    "Temp",
    "Temp_Set",
    "Power",
    "Temp_Air",
    "Temp_W",
    "RH",
    "DP",
    "Lid",
    "valve0",
    "Flow",
    "Interlock",
)


@dataclass(frozen=True)
class Status:
    """One `get Status` telemetry line; per-TEC tuples hold channel 1 first."""

    plates: tuple[float, ...]
    setpoints: tuple[float, ...]
    power: tuple[bool, ...]
    air: float
    water: float
    humidity: float
    dew_point: float
    lid_closed: bool
    valve: bool
    flow: float
    interlock_ok: bool


def _choice(field: str, value: str, true: str, false: str) -> bool:
    if value not in (true, false):
        raise ReplyFormatError(f"expected {field} {true} or {false}, got {value!r}")
    return value == true


def parse_status(text: str) -> Status:
    """`Status = Temp=…;Temp_Set=…;…;Interlock=ok`: every field present, in order."""
    pairs = [part.partition("=") for part in parse_value(text, "Status").split(";")]
    if [name for name, _, _ in pairs] != list(STATUS_FIELDS) or not all(s for _, s, _ in pairs):
        raise ReplyFormatError(f"expected the fields {';'.join(STATUS_FIELDS)}, got {text!r}")
    fields = {name: value for name, _, value in pairs}

    def per_tec(name: str) -> list[str]:
        values = fields[name].split(",")
        if len(values) != CHANNELS:
            raise ReplyFormatError(f"expected {CHANNELS} values of {name}, got {fields[name]!r}")
        return values

    def number(name: str) -> float:
        return parse_reading(fields[name], name)

    return Status(
        plates=tuple(parse_reading(v, "Temp") for v in per_tec("Temp")),
        setpoints=tuple(parse_reading(v, "Temp_Set") for v in per_tec("Temp_Set")),
        power=tuple(_choice("Power", v, "on", "off") for v in per_tec("Power")),
        air=number("Temp_Air"),
        water=number("Temp_W"),
        humidity=number("RH"),
        dew_point=number("DP"),
        lid_closed=_choice("Lid", fields["Lid"], "closed", "open"),
        valve=_choice("valve0", fields["valve0"], "on", "off"),
        flow=number("Flow"),
        interlock_ok=_choice("Interlock", fields["Interlock"], "ok", "tripped"),
    )
