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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from teststand.sim.clock import SimClock
from teststand.sim.instrument import SimInstrument

# -- errors ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ErrorKind:
    """An entry of the error queue: SCPI code and message, shown as `-113,"Undefined header"`."""

    code: int
    message: str

    def __str__(self) -> str:
        return f'{self.code},"{self.message}"'


NO_ERROR = ErrorKind(0, "No error")
SYNTAX_ERROR = ErrorKind(-102, "Syntax error")
DATA_TYPE_ERROR = ErrorKind(-104, "Data type error")
PARAMETER_NOT_ALLOWED = ErrorKind(-108, "Parameter not allowed")
MISSING_PARAMETER = ErrorKind(-109, "Missing parameter")
UNDEFINED_HEADER = ErrorKind(-113, "Undefined header")
SETTINGS_CONFLICT = ErrorKind(-221, "Settings conflict")
DATA_OUT_OF_RANGE = ErrorKind(-222, "Data out of range")
ILLEGAL_PARAMETER_VALUE = ErrorKind(-224, "Illegal parameter value")
QUEUE_OVERFLOW = ErrorKind(-350, "Queue overflow")


class ScpiError(Exception):
    """Raised by a handler or the parser: the command is dropped and `kind` is queued."""

    def __init__(self, kind: ErrorKind) -> None:
        super().__init__(str(kind))
        self.kind = kind


def event_status_bit(code: int) -> int:
    """The *ESR bit an error sets: 32 command, 16 execution, 8 device-specific, 4 query error."""
    if -199 <= code <= -100:
        return 32
    if -299 <= code <= -200:
        return 16
    if -499 <= code <= -400:
        return 4
    return 8 if code != 0 else 0


# -- patterns and mnemonics --------------------------------------------------------------------

_PATTERN_TOKEN = re.compile(r"\[|\]|:|\*|#|[A-Za-z][A-Za-z0-9]*|[0-9]+")


def short_form(spelling: str) -> str:
    """The short form of a manual spelling: its upper-case letters and digits (`NSELect` → NSEL)."""
    return "".join(char for char in spelling if not char.islower())


def _keyword_regex(spelling: str) -> str:
    full, short = spelling.upper(), short_form(spelling)
    return full if full == short else f"(?:{full}|{short})"


@functools.cache
def compile_pattern(pattern: str) -> re.Pattern[str]:
    """The regex of a command pattern; it fully matches an upper-cased header without `?`."""
    text = pattern if pattern.startswith((":", "[", "*")) else ":" + pattern
    parts: list[str] = []
    position = 0
    for token in _PATTERN_TOKEN.finditer(text):
        if token.start() != position:
            break
        position = token.end()
        parts.append(_token_regex(token.group()))
    if position != len(text):
        raise ValueError(f"bad SCPI pattern {pattern!r} at {text[position:]!r}")
    return re.compile("".join(parts))


def _token_regex(token: str) -> str:
    if token == "[":
        return "(?:"
    if token == "]":
        return ")?"
    if token == "#":
        return "([0-9]*)"
    if token[0].isalpha():
        return _keyword_regex(token)
    return re.escape(token)


@functools.cache
def _mnemonic(spelling: str) -> re.Pattern[str]:
    return re.compile(_keyword_regex(spelling), re.IGNORECASE)


def mnemonic_matches(spelling: str, text: str) -> bool:
    """Whether `text` is the short or long form of `spelling` (`FRONt`: FRON or FRONT)."""
    return _mnemonic(spelling).fullmatch(text) is not None


# -- parameters --------------------------------------------------------------------------------

_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Limits:
    """The range of a numeric parameter and the values of MINimum, MAXimum and DEFault."""

    low: float
    high: float
    default: float

    def special(self, word: str) -> float:
        """The value of MIN, MAX or DEF; -224 for another mnemonic."""
        choice = to_choice(word, ("MINimum", "MAXimum", "DEFault"))
        return {"MINimum": self.low, "MAXimum": self.high, "DEFault": self.default}[choice]


def is_number(text: str) -> bool:
    return _NUMBER.fullmatch(text) is not None


def to_number(text: str, limits: Limits | None = None) -> float:
    """A decimal number (`1`, `-2.5`, `1e-6`) or, with `limits`, MIN/MAX/DEF; checked in range."""
    if is_number(text):
        value = float(text)
        if limits is not None and not limits.low <= value <= limits.high:
            raise ScpiError(DATA_OUT_OF_RANGE)
        return value
    if limits is not None and _WORD.fullmatch(text):
        try:
            return limits.special(text)
        except ScpiError:
            pass
    raise ScpiError(DATA_TYPE_ERROR)


def to_bool(text: str) -> bool:
    """ON/OFF or a number (non-zero after rounding is ON)."""
    if is_number(text):
        return round(float(text)) != 0
    return to_choice(text, ("ON", "OFF")) == "ON"


def to_choice(text: str, choices: Sequence[str]) -> str:
    """The spelling in `choices` that `text` names in short or long form."""
    if not _WORD.fullmatch(text):
        raise ScpiError(DATA_TYPE_ERROR)
    for spelling in choices:
        if mnemonic_matches(spelling, text):
            return spelling
    raise ScpiError(ILLEGAL_PARAMETER_VALUE)


def to_string(text: str) -> str:
    """The content of a string parameter in double or single quotes (a doubled quote is one)."""
    if len(text) >= 2 and text[0] in "\"'" and text[-1] == text[0]:
        return text[1:-1].replace(text[0] * 2, text[0])
    raise ScpiError(DATA_TYPE_ERROR)


def split_outside_quotes(text: str, separator: str) -> list[str]:
    """Split at `separator` where it is not inside quotes; -102 on an unclosed quote."""
    parts: list[str] = []
    quote = ""
    start = 0
    for index, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char == separator:
            parts.append(text[start:index])
            start = index + 1
    if quote:
        raise ScpiError(SYNTAX_ERROR)
    parts.append(text[start:])
    return parts


def parse_arguments(text: str) -> tuple[str, ...]:
    """The comma-separated parameters of a command, stripped; -102 on an empty one."""
    if not text.strip():
        return ()
    arguments = tuple(part.strip() for part in split_outside_quotes(text, ","))
    if not all(arguments):
        raise ScpiError(SYNTAX_ERROR)
    return arguments


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
