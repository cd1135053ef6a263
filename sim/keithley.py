"""Keithley 2400 / 2410 / 2450 source-measure unit sourcing voltage into a silicon sensor.

The load is a `SensorModel`: the current follows the source voltage's sign. When the sensor would
draw more than the compliance (current limit), the SMU is in compliance: the current is clamped
to the limit and the voltage falls to what the sensor takes at that current; `TRIP?` answers 1 and
STAT bit 3 is set. `:SOUR:VOLT:PROT` clamps the output magnitude (STAT bit 4).

Choices (see also PROTOCOLS.md):

- Voltage sourcing only: `:SOUR:FUNC CURR` is refused with -224.
- Ranges: 2400 0.2/2/20/200 V, 2410 0.2/2/20/1000 V, 2450 0.02/0.2/2/20/200 V. A level may reach
  1.05 × range (1100 V on the 2410's 1000 V range). Auto range (the *RST default) picks the
  smallest range that holds the level; a level beyond a fixed range, or a fixed range too small
  for the present level, is refused (-222 / -221).
- 2400/2410 command set: `:SENS:CURR:PROT` (compliance), `:SENS:CURR:PROT:TRIP?`,
  `:FORM:ELEM`, numeric `:SOUR:VOLT:PROT <V>` (kept as given, not rounded to hardware steps).
  2450 command set: `:SOUR:VOLT:ILIM`, `:SOUR:VOLT:ILIM:TRIP?`, `:SOUR:VOLT:PROT PROT<n>|NONE`,
  `:READ? ["defbuffer1"[,READ|SOUR|REL ...]]`. The other family's commands are undefined headers
  (-113) on each.
- `:READ?` on a 2400/2410 returns the `:FORM:ELEM` elements always in the order
  VOLT,CURR,RES,TIME,STAT whatever order they were given in (as the real unit does), as
  `+1.000000E+02`. CURR reads +9.91e37 unless current is a sense function, RES unless resistance
  is (then V/I, +9.9e37 at 0 A); TIME is seconds since power-on or `:SYST:TIME:RES`. With the
  output off it queues `803,"Output disabled"` and sends nothing. A 2450 with the output off
  reads its normal output-off state (0 V, 0 A); its numbers have no `+`.
- STAT word bits set: 2 front terminals, 3 compliance, 4 over-voltage protection reached,
  11 voltage / 12 current / 13 resistance sense function on, 14 voltage source.
- Setting queries answer like `1.050000E-04` (no sign), booleans 1/0, enumerations short form.
- Integration time (NPLC × 20 ms) is not simulated: replies come at once (plus server pacing).
- `:SENS:CURR:RANG` is stored but does not limit readings; the 2410's 21 mA limit on the 1000 V
  range is not enforced.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from teststand.sim.clock import SimClock
from teststand.sim.physics import SensorModel
from teststand.sim.scpi import (
    ILLEGAL_PARAMETER_VALUE,
    SETTINGS_CONFLICT,
    Call,
    Command,
    ErrorKind,
    Field,
    Limits,
    ScpiError,
    ScpiInstrument,
    action,
    choice_setting,
    compile_pattern,
    flag_setting,
    number_setting,
    reader,
    short_form,
    to_choice,
    to_string,
)

OUTPUT_DISABLED = ErrorKind(803, "Output disabled")
NOT_A_NUMBER = 9.91e37
OVERFLOW = 9.9e37
ELEMENTS = ("VOLTage", "CURRent", "RESistance", "TIME", "STATus")
#: Sense functions by short name, with the pattern their names match and their query spelling.
FUNCTIONS = {
    "VOLT": (":VOLTage[:DC]", "VOLT:DC"),
    "CURR": (":CURRent[:DC]", "CURR:DC"),
    "RES": (":RESistance", "RES"),
}
BUFFER_ELEMENTS = ("READing", "SOURce", "RELative")
COMPLIANCE_LIMITS = Limits(-1.05, 1.05, 105e-6)
NPLC_LIMITS = Limits(0.01, 10.0, 1.0)
OVP_STEPS_2450 = (2, 5, 10, 20, 40, 60, 80, 100, 120, 140, 160, 180)


@dataclass(frozen=True)
class Dialect:
    """What differs between the models: identity, source ranges and the command family."""

    model: str
    manufacturer: str
    firmware: str
    ranges: tuple[tuple[float, float], ...]  # (range, largest level on it), ascending

    @property
    def is_2450(self) -> bool:
        return self.model == "2450"

    @property
    def max_level(self) -> float:
        return self.ranges[-1][1]


_RANGES_2400 = ((0.2, 0.21), (2.0, 2.1), (20.0, 21.0))
DIALECTS = {
    "2400": Dialect(
        "2400",
        "KEITHLEY INSTRUMENTS INC.",
        "C32   Oct  4 2010 14:20:11/A02  /S/K",
        (*_RANGES_2400, (200.0, 210.0)),
    ),
    "2410": Dialect(
        "2410",
        "KEITHLEY INSTRUMENTS INC.",
        "C34   Sep 21 2016 15:30:00/A02  /J/L",
        (*_RANGES_2400, (1000.0, 1100.0)),
    ),
    "2450": Dialect(
        "2450", "KEITHLEY INSTRUMENTS", "1.7.12b", ((0.02, 0.021), *_RANGES_2400, (200.0, 210.0))
    ),
}


@dataclass
class SmuSettings:
    """What `*RST` restores."""

    source_range: float
    protection: float  # over-voltage protection, V (magnitude)
    output: bool = False
    level: float = 0.0
    auto_range: bool = True
    compliance: float = 105e-6
    nplc: float = 1.0
    terminals: str = "FRONt"
    elements: frozenset[str] = frozenset(ELEMENTS)
    functions: tuple[str, ...] = ("CURR",)
    concurrent: bool = True
    current_range: float = 105e-6
    current_auto_range: bool = True


@dataclass(frozen=True)
class Point:
    """The operating point: terminal voltage and current, and which limits hold them."""

    voltage: float = 0.0
    current: float = 0.0
    compliance: bool = False
    protection: bool = False


def setting_text(value: float) -> str:
    """A number as setting queries answer it: `1.050000E-04`."""
    return f"{value + 0.0:.6E}"


def reading_text(value: float) -> str:
    """A 2400 reading element: `+1.050000E-04`."""
    return f"{value + 0.0:+.6E}"


class Keithley2410(ScpiInstrument):
    """A 2400-series SMU (dialect 2400, 2410 or 2450) biasing a sensor."""

    kind = "keithley2410"
    options_help: ClassVar[dict[str, str]] = {
        "dialect": "2400, 2410 (default) or 2450: identity, voltage ranges, command set",
        "serial": "serial number in *IDN? (default 4123456)",
        "leakage": "sensor leakage current at full depletion and 20 °C, A (default 1e-6)",
        "depletion": "sensor full-depletion voltage, V (default 50)",
        "breakdown": "sensor breakdown voltage, V (default 400)",
        "temperature": "sensor temperature, °C, or a callable returning it (default 20)",
    }

    def __init__(
        self,
        clock: SimClock | None = None,
        dialect: str = "2410",
        serial: str = "4123456",
        leakage: float = 1.0e-6,
        depletion: float = 50.0,
        breakdown: float = 400.0,
        temperature: Callable[[], float] | float = 20.0,
    ) -> None:
        if dialect not in DIALECTS:
            raise ValueError(f"unknown Keithley dialect {dialect!r}; known: {', '.join(DIALECTS)}")
        super().__init__(clock)
        self.dialect = DIALECTS[dialect]
        self.serial = serial
        self.sensor = SensorModel(
            leakage_20c=leakage, depletion_voltage=depletion, breakdown_voltage=breakdown
        )
        self._temperature = temperature
        self._time_origin = self.clock.now()
        self.settings = self._defaults()

    # -- ScpiInstrument ----------------------------------------------------------------------
    def identity(self) -> str:
        d = self.dialect
        return f"{d.manufacturer},MODEL {d.model},{self.serial},{d.firmware}"

    def reset(self) -> None:
        self.settings = self._defaults()

    def commands(self) -> list[Command]:
        family = self._commands_2450() if self.dialect.is_2450 else self._commands_2400()
        return [*self._shared_commands(), *family]

    def snapshot(self) -> dict[str, Any]:
        settings = asdict(self.settings)
        settings["elements"] = sorted(self.settings.elements)
        return {"model": self.dialect.model, **settings, "point": asdict(self.operating_point())}

    # -- physics -----------------------------------------------------------------------------
    def temperature(self) -> float:
        source = self._temperature
        return source() if callable(source) else source

    def operating_point(self) -> Point:
        """Terminal voltage and current now, with the compliance and protection flags."""
        s = self.settings
        if not s.output:
            return Point()
        sign = -1.0 if s.level < 0 else 1.0
        volts = min(abs(s.level), s.protection)
        protected = abs(s.level) > s.protection
        celsius = self.temperature()
        amps = self.sensor.current(volts, celsius)
        if amps <= s.compliance:
            return Point(sign * volts, sign * amps, False, protected)
        volts = self.sensor.voltage_for_current(s.compliance, celsius, volts)
        return Point(sign * volts, sign * s.compliance, True, protected)

    # -- settings ----------------------------------------------------------------------------
    def _defaults(self) -> SmuSettings:
        d = self.dialect
        return SmuSettings(
            source_range=d.ranges[0][0],
            protection=d.max_level,
            concurrent=not d.is_2450,
        )

    def _fit_range(self, level: float) -> float:
        """The smallest source range whose largest level holds `level`."""
        return next(r for r, top in self.dialect.ranges if abs(level) <= top)

    def _level_limits(self) -> Limits:
        s = self.settings
        top = self.dialect.max_level if s.auto_range else self._range_top(s.source_range)
        return Limits(-top, top, 0.0)

    def _range_top(self, source_range: float) -> float:
        return dict(self.dialect.ranges)[source_range]

    def _set_level(self, value: float) -> None:
        self.settings.level = value
        if self.settings.auto_range:
            self.settings.source_range = self._fit_range(value)

    def _set_range(self, value: float) -> None:
        chosen = self._fit_range(value)
        if abs(self.settings.level) > self._range_top(chosen):
            raise ScpiError(SETTINGS_CONFLICT)
        self.settings.source_range = chosen
        self.settings.auto_range = False

    def _set_auto_range(self, on: bool) -> None:
        self.settings.auto_range = on
        if on:
            self.settings.source_range = self._fit_range(self.settings.level)

    def _set_compliance(self, value: float) -> None:
        self.settings.compliance = max(abs(value), 1e-9)

    def _set_protection(self, value: float) -> None:
        self.settings.protection = abs(value)

    def _set_current_range(self, value: float) -> None:
        self.settings.current_range = abs(value)
        self.settings.current_auto_range = False

    def _set_functions(self, call: Call) -> None:
        wanted = self._parse_functions(call)
        s = self.settings
        if s.concurrent:
            wanted = {*s.functions, *wanted}
        elif len(wanted) > 1:
            raise ScpiError(SETTINGS_CONFLICT)
        s.functions = tuple(name for name in FUNCTIONS if name in wanted)

    def _remove_all_functions(self) -> None:
        self.settings.functions = ()

    def _remove_functions(self, call: Call) -> None:
        unwanted = self._parse_functions(call)
        self.settings.functions = tuple(f for f in self.settings.functions if f not in unwanted)

    @staticmethod
    def _parse_functions(call: Call) -> set[str]:
        names = [n.strip() for text in call.count(1, 3) for n in to_string(text).split(",")]
        found = set()
        for name in names:
            matches = [
                f
                for f, (pattern, _) in FUNCTIONS.items()
                if compile_pattern(pattern).fullmatch(":" + name.upper())
            ]
            if not matches:
                raise ScpiError(ILLEGAL_PARAMETER_VALUE)
            found.add(matches[0])
        return found

    def _functions_text(self) -> str:
        return ",".join(f'"{FUNCTIONS[f][1]}"' for f in self.settings.functions)

    def _set_elements(self, call: Call) -> None:
        chosen = [to_choice(text, ELEMENTS) for text in call.count(1, len(ELEMENTS))]
        self.settings.elements = frozenset(chosen)

    def _elements_text(self) -> str:
        return ",".join(short_form(e) for e in ELEMENTS if e in self.settings.elements)

    def _set_protection_2450(self, call: Call) -> None:
        choice = to_choice(call.arg(), [*(f"PROT{v}" for v in OVP_STEPS_2450), "NONE"])
        self.settings.protection = self.dialect.max_level if choice == "NONE" else float(choice[4:])

    def _protection_text_2450(self) -> str:
        volts = self.settings.protection
        return "NONE" if volts >= self.dialect.max_level else f"PROT{volts:g}"

    def _reset_time(self) -> None:
        self._time_origin = self.clock.now()

    # -- readings ----------------------------------------------------------------------------
    def _timestamp(self) -> float:
        return round(self.clock.now() - self._time_origin, 3)

    def _tripped(self) -> str:
        return "1" if self.operating_point().compliance else "0"

    def _status_word(self, point: Point) -> int:
        s = self.settings
        bits = {
            2: s.terminals == "FRONt",
            3: point.compliance,
            4: point.protection,
            11: "VOLT" in s.functions,
            12: "CURR" in s.functions,
            13: "RES" in s.functions,
            14: True,
        }
        return sum(1 << bit for bit, on in bits.items() if on)

    def _resistance(self, point: Point) -> float:
        return OVERFLOW if point.current == 0 else point.voltage / point.current

    def _read_2400(self) -> str:
        if not self.settings.output:
            raise ScpiError(OUTPUT_DISABLED)
        point = self.operating_point()
        functions = self.settings.functions
        values = {
            "VOLTage": point.voltage,
            "CURRent": point.current if "CURR" in functions else NOT_A_NUMBER,
            "RESistance": self._resistance(point) if "RES" in functions else NOT_A_NUMBER,
            "TIME": self._timestamp(),
            "STATus": float(self._status_word(point)),
        }
        return ",".join(reading_text(values[e]) for e in ELEMENTS if e in self.settings.elements)

    def _read_2450(self, call: Call) -> str:
        args = call.count(0, 15)
        if args and to_string(args[0]) not in ("defbuffer1", "defbuffer2"):
            raise ScpiError(ILLEGAL_PARAMETER_VALUE)
        elements = [to_choice(text, BUFFER_ELEMENTS) for text in args[1:]] or ["READing"]
        point = self.operating_point()
        measured = {"VOLT": point.voltage, "CURR": point.current, "RES": self._resistance(point)}
        function = self.settings.functions[0] if self.settings.functions else "CURR"
        values = {
            "READing": measured[function],
            "SOURce": point.voltage,
            "RELative": self._timestamp(),
        }
        return ",".join(setting_text(values[e]) for e in elements)

    # -- command tables ----------------------------------------------------------------------
    def _number(
        self,
        pattern: str,
        name: str,
        limits: Limits | Callable[[], Limits],
        put: Callable[[float], None] | None = None,
    ) -> Command:
        """A numeric setting `name` (assigned as given unless `put` says otherwise)."""
        field = Field(lambda: self.settings, name)
        return number_setting(pattern, field.get, put or field.put, limits, setting_text)

    def _flag(self, pattern: str, name: str, put: Callable[[bool], None] | None = None) -> Command:
        field = Field(lambda: self.settings, name)
        return flag_setting(pattern, field.get, put or field.put)

    def _shared_commands(self) -> list[Command]:
        source = "[:SOURce[1]]:VOLTage"
        top = self.dialect.max_level
        terminals = Field(lambda: self.settings, "terminals")
        return [
            choice_setting(
                "[:SOURce[1]]:FUNCtion[:MODE]", ("VOLTage",), lambda: "VOLTage", lambda _: None
            ),
            self._number(
                f"{source}[:LEVel][:IMMediate][:AMPLitude]",
                "level",
                self._level_limits,
                self._set_level,
            ),
            self._number(
                f"{source}:RANGe", "source_range", Limits(-top, top, 20.0), self._set_range
            ),
            self._flag(f"{source}:RANGe:AUTO", "auto_range", self._set_auto_range),
            Command("[:SENSe[1]]:FUNCtion[:ON]", self._set_functions, reader(self._functions_text)),
            *(
                self._number(f"[:SENSe[1]]:{function}:NPLCycles", "nplc", NPLC_LIMITS)
                for function in ("CURRent[:DC]", "VOLTage[:DC]", "RESistance")
            ),
            self._number(
                "[:SENSe[1]]:CURRent[:DC]:RANGe[:UPPer]",
                "current_range",
                COMPLIANCE_LIMITS,
                self._set_current_range,
            ),
            self._flag("[:SENSe[1]]:CURRent[:DC]:RANGe:AUTO", "current_auto_range"),
            choice_setting(":ROUTe:TERMinals", ("FRONt", "REAR"), terminals.get, terminals.put),
            self._flag(":OUTPut[1][:STATe]", "output"),
        ]

    def _commands_2400(self) -> list[Command]:
        top = self.dialect.max_level
        protection = "[:SENSe[1]]:CURRent[:DC]:PROTection"
        return [
            Command("[:SENSe[1]]:FUNCtion:OFF", self._remove_functions),
            Command("[:SENSe[1]]:FUNCtion:OFF:ALL", action(self._remove_all_functions)),
            self._flag("[:SENSe[1]]:FUNCtion:CONCurrent", "concurrent"),
            self._number(
                f"{protection}[:LEVel]", "compliance", COMPLIANCE_LIMITS, self._set_compliance
            ),
            Command(f"{protection}:TRIPped", read=reader(self._tripped)),
            self._number(
                "[:SOURce[1]]:VOLTage:PROTection[:LEVel]",
                "protection",
                Limits(-top, top, top),
                self._set_protection,
            ),
            Command(":FORMat:ELEMents[:SENSe[1]]", self._set_elements, reader(self._elements_text)),
            Command(":READ", read=reader(self._read_2400)),
            Command(":SYSTem:TIME:RESet", action(self._reset_time)),
        ]

    def _commands_2450(self) -> list[Command]:
        limit = "[:SOURce[1]]:VOLTage:ILIMit[:LEVel]"
        return [
            self._number(limit, "compliance", COMPLIANCE_LIMITS, self._set_compliance),
            Command(f"{limit}:TRIPped", read=reader(self._tripped)),
            Command(
                "[:SOURce[1]]:VOLTage:PROTection[:LEVel]",
                self._set_protection_2450,
                reader(self._protection_text_2450),
            ),
            Command(":READ", read=self._read_2450),
        ]
