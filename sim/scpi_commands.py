"""SCPI command tables: one `Command` per header pattern, and builders for common setting shapes."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from teststand.sim.scpi_syntax import (
    MISSING_PARAMETER,
    PARAMETER_NOT_ALLOWED,
    Limits,
    ScpiError,
    compile_pattern,
    short_form,
    to_bool,
    to_choice,
    to_number,
)

# -- commands ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One command as a handler sees it: its parameters and the numeric suffixes of its header."""

    args: tuple[str, ...] = ()
    suffixes: tuple[int, ...] = ()

    def count(self, low: int, high: int) -> tuple[str, ...]:
        """The parameters, checked to be between `low` and `high` in number (-109, -108)."""
        if len(self.args) < low:
            raise ScpiError(MISSING_PARAMETER)
        if len(self.args) > high:
            raise ScpiError(PARAMETER_NOT_ALLOWED)
        return self.args

    def arg(self) -> str:
        """The one parameter."""
        return self.count(1, 1)[0]

    def optional(self) -> str | None:
        """The parameter if there is one (at most one)."""
        args = self.count(0, 1)
        return args[0] if args else None


Writer = Callable[[Call], None]
Reader = Callable[[Call], str]


@dataclass(frozen=True)
class Command:
    """One entry of an instrument's command table.

    `write` handles the command form, `read` the query form (`?`); either may be absent.
    `setting` tells whether the command form changes settings (refused in LOCAL control).
    """

    pattern: str
    write: Writer | None = None
    read: Reader | None = None
    setting: bool = True

    @property
    def regex(self) -> re.Pattern[str]:
        return compile_pattern(self.pattern)


@dataclass(frozen=True)
class Field:
    """Attribute `name` of whatever object `owner()` returns now, e.g. a settings object that
    `*RST` replaces or the selected channel: the getter and setter of a setting command."""

    owner: Callable[[], object]
    name: str

    def get(self) -> Any:
        return getattr(self.owner(), self.name)

    def put(self, value: Any) -> None:
        setattr(self.owner(), self.name, value)


def action(function: Callable[[], None]) -> Writer:
    """A command handler that takes no parameter."""

    def write(call: Call) -> None:
        call.count(0, 0)
        function()

    return write


def reader(function: Callable[[], str]) -> Reader:
    """A query handler that takes no parameter."""

    def read(call: Call) -> str:
        call.count(0, 0)
        return function()

    return read


def number_setting(
    pattern: str,
    get: Callable[[], float],
    put: Callable[[float], None],
    limits: Limits | Callable[[], Limits],
    show: Callable[[float], str],
) -> Command:
    """A numeric setting: `PATTERN <n>|MIN|MAX|DEF` and `PATTERN? [MIN|MAX|DEF]`."""

    def bounds() -> Limits:
        return limits() if callable(limits) else limits

    def write(call: Call) -> None:
        put(to_number(call.arg(), bounds()))

    def read(call: Call) -> str:
        which = call.optional()
        return show(get() if which is None else bounds().special(which))

    return Command(pattern, write, read)


def flag_setting(pattern: str, get: Callable[[], bool], put: Callable[[bool], None]) -> Command:
    """A boolean setting: `PATTERN ON|OFF|1|0`, queried as 1 or 0."""
    return Command(
        pattern,
        write=lambda call: put(to_bool(call.arg())),
        read=reader(lambda: "1" if get() else "0"),
    )


def choice_setting(
    pattern: str, choices: Sequence[str], get: Callable[[], str], put: Callable[[str], None]
) -> Command:
    """An enumerated setting; `get` returns one of `choices`, queried in its short form."""
    return Command(
        pattern,
        write=lambda call: put(to_choice(call.arg(), choices)),
        read=reader(lambda: short_form(get())),
    )
