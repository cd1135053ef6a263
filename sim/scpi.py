"""A small SCPI engine shared by the SCPI simulators (Keithley SMUs, R&S HMP supplies).

Command patterns are written as in the manuals: upper case is the short form, brackets mark
optional nodes, `[1]` an optional numeric suffix and `#` any numeric suffix (given to the
handler). Patterns and headers get a leading colon if they lack one, so write optional leading
nodes with the colon inside the brackets (`[:SOURce]:VOLTage`, not `[SOURce:]VOLTage`).

Parsing follows IEEE 488.2 / SCPI-99 where it matters to a driver:

- A line holds commands separated by `;`. A command without a leading colon after `;` is
  relative to the path of the previous header, i.e. all its nodes but the last
  (`:SENS:CURR:PROT 1e-5;NPLC 1` sets `:SENS:CURR:NPLC`); common commands (`*...`) do not change
  that path. The first command of a line starts at the root.
- Replies of all queries of a line are joined with `;` into one reply line.
- A bad command is not answered: its error goes to the queue (`:SYST:ERR?`) and the rest of the
  line is skipped; replies of queries before it on the same line are still sent.
- While `local` is set (LOCAL control, by fault injection) every setting command is refused and
  queues `-221,"Settings conflict"`; queries and status commands (`*CLS`, `*OPC`, `*ESE`, ...)
  still work.

Errors: -102 malformed line (bad header characters, unbalanced quotes, empty parameter);
-113 unknown header, or a query of a command-only header and vice versa; -108/-109 too many or
too few parameters; -104 a parameter of the wrong type (a mnemonic or string where a number is
wanted, a string or number where a mnemonic is wanted); -224 a mnemonic that is not one of the
allowed ones; -222 a number out of range; -350 replaces the newest entry when the queue is full.
"""

from __future__ import annotations

import functools
import re
from abc import abstractmethod
from collections import deque
from collections.abc import Callable
from typing import ClassVar

from teststand.sim.clock import SimClock
from teststand.sim.instrument import SimInstrument
from teststand.sim.scpi_commands import (
    Call,
    Command,
    Field,
    Reader,
    Writer,
    action,
    choice_setting,
    flag_setting,
    number_setting,
    reader,
)
from teststand.sim.scpi_syntax import (
    DATA_OUT_OF_RANGE,
    DATA_TYPE_ERROR,
    ILLEGAL_PARAMETER_VALUE,
    MISSING_PARAMETER,
    NO_ERROR,
    PARAMETER_NOT_ALLOWED,
    QUEUE_OVERFLOW,
    SETTINGS_CONFLICT,
    SYNTAX_ERROR,
    UNDEFINED_HEADER,
    ErrorKind,
    Limits,
    ScpiError,
    compile_pattern,
    event_status_bit,
    is_number,
    mnemonic_matches,
    parse_arguments,
    short_form,
    split_outside_quotes,
    to_bool,
    to_choice,
    to_number,
    to_string,
)

__all__ = [
    "DATA_OUT_OF_RANGE",
    "DATA_TYPE_ERROR",
    "ILLEGAL_PARAMETER_VALUE",
    "MISSING_PARAMETER",
    "NO_ERROR",
    "PARAMETER_NOT_ALLOWED",
    "QUEUE_OVERFLOW",
    "SETTINGS_CONFLICT",
    "SYNTAX_ERROR",
    "UNDEFINED_HEADER",
    "Call",
    "Command",
    "ErrorKind",
    "Field",
    "Limits",
    "Reader",
    "ScpiError",
    "ScpiInstrument",
    "Writer",
    "action",
    "choice_setting",
    "compile_pattern",
    "event_status_bit",
    "flag_setting",
    "is_number",
    "mnemonic_matches",
    "number_setting",
    "parse_arguments",
    "reader",
    "short_form",
    "split_outside_quotes",
    "to_bool",
    "to_choice",
    "to_number",
    "to_string",
]

# -- the instrument ----------------------------------------------------------------------------

_HEADER = re.compile(r"\*[A-Z]+\??|:?[A-Z][A-Z0-9_]*(?::[A-Z][A-Z0-9_]*)*\??")
_UNIT = re.compile(r"(\S+)\s*(.*)", re.DOTALL)
_BYTE = Limits(0, 255, 0)


class ScpiInstrument(SimInstrument):
    """A SimInstrument that speaks SCPI: subclasses give `identity()`, `reset()`, `commands()`.

    Common commands: `*IDN?`, `*RST`, `*CLS`, `*OPC`/`*OPC?` (1), `*WAI`, `*ESR?`, `*ESE`,
    `*SRE`, `*STB?`, `*TST?` (0), `:SYST:ERR[:NEXT]?`, `:SYST:ERR:ALL?`, `:SYST:ERR:COUN?`,
    `:STAT:QUE[:NEXT]?`, `:SYST:VERS?`, `:STAT:PRES`, `:SYST:LOC`, `:SYST:REM`, `:SYST:RWL`
    (the last three are accepted and recorded in `remote`; LOCAL control itself comes from fault
    injection, see `local`).
    """

    #: Entries the error queue holds; a further error replaces the newest with -350.
    error_queue_size: ClassVar[int] = 10
    #: The SCPI version `:SYST:VERS?` answers.
    scpi_version: ClassVar[str] = "1999.0"

    def __init__(self, clock: SimClock | None = None) -> None:
        super().__init__(clock)
        self.errors: deque[ErrorKind] = deque()
        self.event_status = 0  # *ESR
        self.event_enable = 0  # *ESE
        self.service_enable = 0  # *SRE
        self.remote = True  # last :SYST:REM / :SYST:LOC

    # -- what a subclass provides ------------------------------------------------------------
    @abstractmethod
    def identity(self) -> str:
        """The `*IDN?` reply."""

    @abstractmethod
    def reset(self) -> None:
        """`*RST`: settings to their defaults (the error queue is kept)."""

    @abstractmethod
    def commands(self) -> list[Command]:
        """The instrument's command table (common commands are added by this class)."""

    def settle(self) -> None:
        """Called after each command that ran, to apply protections (trips, limits)."""

    # -- the engine --------------------------------------------------------------------------
    @functools.cached_property
    def command_table(self) -> tuple[Command, ...]:
        """Common and instrument commands, built on first use (patterns compiled, so checked)."""
        table = (*self._common_commands(), *self.commands())
        for command in table:
            compile_pattern(command.pattern)
        return table

    def push_error(self, kind: ErrorKind) -> None:
        """Queue an error and set its *ESR bit."""
        self.event_status |= event_status_bit(kind.code)
        if len(self.errors) >= self.error_queue_size:
            self.errors[-1] = QUEUE_OVERFLOW
        else:
            self.errors.append(kind)

    def respond(self, line: str) -> str | None:
        replies: list[str] = []
        path = ":"
        try:
            for unit in split_outside_quotes(line, ";"):
                if unit.strip():
                    reply, path = self._execute(unit.strip(), path)
                    if reply is not None:
                        replies.append(reply)
                    self.settle()
        except ScpiError as error:
            self.push_error(error.kind)
        return ";".join(replies) if replies else None

    def _execute(self, unit: str, path: str) -> tuple[str | None, str]:
        """Run one command; return its reply and the path for the next relative header."""
        match = _UNIT.fullmatch(unit)
        assert match is not None  # `unit` is stripped and not empty
        header = match[1].upper()
        if not _HEADER.fullmatch(header):
            raise ScpiError(SYNTAX_ERROR)
        query = header.endswith("?")
        name = header.removesuffix("?")
        if not name.startswith(("*", ":")):
            name = path + name
        command, suffixes = self._lookup(name)
        call = Call(parse_arguments(match[2]), suffixes)
        reply = self._dispatch(command, call, query)
        return reply, path if name.startswith("*") else name[: name.rindex(":") + 1]

    def _lookup(self, name: str) -> tuple[Command, tuple[int, ...]]:
        for command in self.command_table:
            found = command.regex.fullmatch(name)
            if found is not None:
                return command, tuple(int(group or 1) for group in found.groups())
        raise ScpiError(UNDEFINED_HEADER)

    def _dispatch(self, command: Command, call: Call, query: bool) -> str | None:
        if query:
            if command.read is None:
                raise ScpiError(UNDEFINED_HEADER)
            return command.read(call)
        if command.write is None:
            raise ScpiError(UNDEFINED_HEADER)
        if self.local and command.setting:
            raise ScpiError(SETTINGS_CONFLICT)
        command.write(call)
        return None

    # -- common commands ---------------------------------------------------------------------
    def _common_commands(self) -> list[Command]:
        def status(pattern: str, function: Callable[[], None]) -> Command:
            return Command(pattern, write=action(function), setting=False)

        return [
            Command("*IDN", read=reader(self.identity)),
            Command("*RST", write=action(self.reset)),
            status("*CLS", self.clear_status),
            status("*WAI", lambda: None),
            Command("*OPC", action(self._operation_complete), reader(lambda: "1"), setting=False),
            Command("*ESR", read=reader(self._read_event_status)),
            self._register("*ESE", "event_enable"),
            self._register("*SRE", "service_enable"),
            Command("*STB", read=reader(lambda: str(self.status_byte()))),
            Command("*TST", read=reader(lambda: "0")),
            Command(":SYSTem:ERRor[:NEXT]", read=reader(self.next_error)),
            Command(":STATus:QUEue[:NEXT]", read=reader(self.next_error)),
            Command(":SYSTem:ERRor:ALL", read=reader(self._all_errors)),
            Command(":SYSTem:ERRor:COUNt", read=reader(lambda: str(len(self.errors)))),
            Command(":SYSTem:VERSion", read=reader(lambda: self.scpi_version)),
            status(":STATus:PRESet", lambda: None),
            status(":SYSTem:LOCal", lambda: setattr(self, "remote", False)),
            status(":SYSTem:REMote", lambda: setattr(self, "remote", True)),
            status(":SYSTem:RWLock", lambda: setattr(self, "remote", True)),
        ]

    def _register(self, pattern: str, attribute: str) -> Command:
        """An 8-bit enable register (*ESE, *SRE), settable in LOCAL too."""
        return Command(
            pattern,
            write=lambda call: setattr(self, attribute, int(to_number(call.arg(), _BYTE))),
            read=reader(lambda: str(getattr(self, attribute))),
            setting=False,
        )

    def clear_status(self) -> None:
        """`*CLS`: empty the error queue and clear the event status register."""
        self.errors.clear()
        self.event_status = 0

    def next_error(self) -> str:
        """The oldest queued error, removed from the queue; `0,"No error"` when empty."""
        return str(self.errors.popleft() if self.errors else NO_ERROR)

    def status_byte(self) -> int:
        """*STB: bit 2 error available, bit 5 enabled event summary, bit 6 master summary."""
        byte = (4 if self.errors else 0) | (32 if self.event_status & self.event_enable else 0)
        return byte | (64 if byte & self.service_enable else 0)

    def _all_errors(self) -> str:
        entries = [self.next_error() for _ in range(len(self.errors))]
        return ",".join(entries) or str(NO_ERROR)

    def _operation_complete(self) -> None:
        self.event_status |= 1

    def _read_event_status(self) -> str:
        value, self.event_status = self.event_status, 0
        return str(value)
