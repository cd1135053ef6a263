"""Keithley 2400 / 2410 / 2450 source-measure unit driving a silicon sensor.

The load is a `SensorModel`: the current follows the source's sign. Sourcing voltage, when the
sensor would draw more than the current limit the SMU is in compliance: the current is clamped
to the limit and the voltage falls to what the sensor takes at that current. Sourcing current,
when the sensor needs more than the voltage limit the voltage is clamped there and the current
is what the sensor draws at it. In compliance `TRIP?` answers 1 and STAT bit 3 is set.
`:SOUR:VOLT:PROT` clamps the output voltage's magnitude (STAT bit 4).

Commands are those of the manuals' command summaries for DC source-measure use (2400 Series
User's Manual, sections 17-18; 2450 Reference Manual, SCPI command reference):

- Both families: `:SOUR:FUNC VOLT|CURR`, `:SOUR:VOLT|CURR[:LEV]`, `:RANG`, `:RANG:AUTO`,
  `:SENS:FUNC`, `:SENS:CURR|VOLT|RES:NPLC`, `:SENS:CURR|VOLT|RES:RANG[:UPP]` and `:AUTO`,
  `:ROUT:TERM`, `:OUTP[:STAT]`, `:INIT`, `:ABOR`, `:READ?`, `:FETC?`, `:MEAS[:<function>]?`,
  and the common commands and `:SYST:ERR?` of `scpi.py`.
- 2400/2410 only: compliance `:SENS:CURR:PROT` / `:SENS:VOLT:PROT` (`:TRIP?`), `:CONF:<function>`,
  `:CONF?`, `:SENS:DATA[:LAT]?`, `:TRIG:COUN`, `:ARM:COUN`, `:TRIG:DEL`, `:FORM:ELEM`, numeric
  `:SOUR:VOLT:PROT <V>`, source modes `:SOUR:VOLT|CURR:MODE FIX|SWE|LIST` with `:STAR`, `:STOP`,
  `:STEP`, `:SPAN`, `:CENT`, `:SOUR:SWE:POIN|SPAC|DIR`, `:SOUR:LIST:VOLT|CURR`,
  `:SOUR:CLE[:IMM]`, `:SOUR:CLE:AUTO`, `:OUTP:SMOD`, `:SENS:FUNC:CONC|OFF|OFF:ALL`,
  `:SENS:RES:MODE`, `:SOUR:DEL[:AUTO]`, `:SENS:AVER[:STAT]|:TCON|:COUN`, `:DISP:ENAB`,
  `:SYST:RSEN`, `:SYST:AZER`, `:SYST:TIME?`, `:SYST:TIME:RES`, `:SYST:PRES`.
- 2450 only: limits `:SOUR:VOLT:ILIM` / `:SOUR:CURR:VLIM` (`:TRIP?`), `:SOUR:VOLT:PROT
  PROT<n>|NONE`, `[:SENS]:COUN`, buffer arguments `"defbuffer1"[,READ|SOUR|REL ...]` on
  `:READ?`/`:FETC?`/`:MEAS?`, `:TRAC:ACT?`, `:TRAC:CLE`, `:TRAC:DATA? <start>,<end>[,...]`,
  `:TRAC:TRIG`, `[:SENS]:<function>:AVER[:STAT]|:TCON|:COUN`, `:AZER`, `:RSEN`,
  `:SOUR:<function>:DEL[:AUTO]`, `:SOUR:<function>:READ:BACK` (one value serves all functions).
- The other family's commands are undefined headers (-113); so are the subsystems not simulated
  (CALCulate, TRACe on the 2400, DISPlay, SOURce2, STATus registers beyond `:STAT:PRES`/`:QUE?`,
  the 2450's trigger models, sweeps and lists).

Choices:

- Ranges: 2400 0.2/2/20/200 V, 2410 0.2/2/20/1000 V, 2450 0.02/0.2/2/20/200 V; current
  1 µA…1 A (2450 from 10 nA). A level may reach 1.05 × range (1100 V on the 2410's 1000 V
  range). Auto range (the *RST default) picks the smallest range that holds the level; a level
  beyond a fixed range, or a fixed range too small for the present level, is refused (-222/-221).
- The trigger model takes arm count × trigger count readings (at most 2500: -221 otherwise) at
  once in simulated time; in SWEep or LIST mode reading k sources point k (the points repeat).
  `:READ?` = `:INIT` + `:FETC?`; `:FETC?` answers the last readings again, or -230 "Data corrupt
  or stale" before any. `:MEAS:<f>?` = `:CONF:<f>` + `:READ?`; `:CONF:<f>` makes f the only sense
  function, sets both counts to 1 and turns the output on.
- A 2400/2410 reading is the `:FORM:ELEM` elements, always in the order VOLT,CURR,RES,TIME,STAT
  (as the real unit does), each as `+1.000000E+02`; several readings are joined by `,`. The
  sourced quantity reads its actual value, a sensed one its measurement, the others +9.91e37 (RES
  is V/I when sensed, +9.9e37 at 0 A); TIME is seconds since power-on or `:SYST:TIME:RES`. With
  the output off (and `:SOUR:CLE:AUTO OFF`), `:INIT`/`:READ?`/`:MEAS?` queue `803,"Output
  disabled"` (`:MEAS?` turns it on first); with auto output-off the output is on for the readings.
- A 2450 reads its output-off state (0 V, 0 A) with the output off; its numbers have no `+`.
  `:READ?`/`:MEAS?` take `:COUN` readings into defbuffer1 and answer the last.
- STAT word bits: 2 front terminals, 3 compliance, 4 over-voltage protection reached,
  11/12/13 voltage/current/resistance sense function on, 14 voltage source, 15 current source.
- Setting queries answer like `1.050000E-04` (no sign), booleans 1/0, enumerations short form.
- Integration time (NPLC × 20 ms), delays, filters and measure ranges are stored but not
  simulated: replies come at once (plus server pacing) and readings are exact.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any, ClassVar

from teststand.sim.clock import SimClock
from teststand.sim.keithley_2400 import commands_2400
from teststand.sim.keithley_2450 import commands_2450
from teststand.sim.keithley_model import (
    COMPLIANCE_LIMITS,
    CURRENT_LEVEL_LIMITS,
    DIALECTS,
    FUNCTIONS,
    NPLC_LIMITS,
    RESISTANCE_RANGE_LIMITS,
    SOURCE_FUNCTIONS,
    Point,
    Reading,
    SmuSettings,
    fit_range,
    operating_point,
    setting_text,
    status_word,
)
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
    to_string,
)

OUTPUT_DISABLED = ErrorKind(803, "Output disabled")


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
        self.readings: list[Reading] = []  # the last trigger model's (2400: sample buffer)
        self.buffer: list[Reading] = []  # 2450 defbuffer1

    # -- ScpiInstrument ----------------------------------------------------------------------
    def identity(self) -> str:
        d = self.dialect
        return f"{d.manufacturer},MODEL {d.model},{self.serial},{d.firmware}"

    def reset(self) -> None:
        self.settings = self._defaults()
        self.readings = []
        self.buffer = []

    def commands(self) -> list[Command]:
        family = commands_2450(self) if self.dialect.is_2450 else commands_2400(self)
        return [*self._shared_commands(), *family]

    def snapshot(self) -> dict[str, Any]:
        settings = asdict(self.settings)
        settings["elements"] = sorted(self.settings.elements)
        return {"model": self.dialect.model, **settings, "point": asdict(self.operating_point())}

    # -- physics -----------------------------------------------------------------------------
    def temperature(self) -> float:
        source = self._temperature
        return source() if callable(source) else source

    def operating_point(self, level: float | None = None) -> Point:
        """Terminal voltage and current now (at `level`, default the bias), with the flags."""
        s = self.settings
        return operating_point(
            s, self.sensor, self.temperature(), s.bias() if level is None else level
        )

    def take_readings(self, count: int) -> list[Reading]:
        """Run `count` source-measure cycles (sweeping in SWEep/LIST mode) and keep them."""
        s = self.settings
        levels = s.sweep_levels(count)
        switched = s.auto_output_off and not s.output
        if switched:
            s.output = True
        try:
            self.readings = [self._reading(level) for level in levels]
        finally:
            if switched:
                s.output = False
        return self.readings

    def _reading(self, level: float) -> Reading:
        point = self.operating_point(level)
        return Reading(point, level, self.timestamp(), status_word(self.settings, point))

    def timestamp(self) -> float:
        return round(self.clock.now() - self._time_origin, 3)

    def reset_time(self) -> None:
        self._time_origin = self.clock.now()

    def limit_tripped(self, sourcing_voltage: bool) -> str:
        """`...:TRIP?` of the current limit (sourcing voltage) or the voltage limit: 1 or 0."""
        held = self.operating_point().compliance
        return "1" if held and self.settings.sources_voltage == sourcing_voltage else "0"

    def require_output(self) -> None:
        """803 when a trigger model would run with the output off."""
        if not (self.settings.output or self.settings.auto_output_off):
            raise ScpiError(OUTPUT_DISABLED)

    # -- settings ----------------------------------------------------------------------------
    def _defaults(self) -> SmuSettings:
        d = self.dialect
        return SmuSettings(
            source_range=d.ranges[0][0],
            protection=d.max_level,
            current_source_range=d.current_ranges[0],
            output_off_mode=d.output_off_mode,
            concurrent=not d.is_2450,
        )

    def _fit_range(self, level: float) -> float:
        """The smallest source voltage range whose largest level holds `level`."""
        return next(r for r, top in self.dialect.ranges if abs(level) <= top)

    def _level_limits(self) -> Limits:
        s = self.settings
        top = self.dialect.max_level if s.auto_range else dict(self.dialect.ranges)[s.source_range]
        return Limits(-top, top, 0.0)

    def _current_limits(self) -> Limits:
        s = self.settings
        top = 1.05 * (
            self.dialect.current_ranges[-1] if s.current_source_auto else s.current_source_range
        )
        return Limits(-top, top, 0.0)

    def _set_level(self, value: float) -> None:
        self.settings.level = value
        if self.settings.auto_range:
            self.settings.source_range = self._fit_range(value)

    def _set_range(self, value: float) -> None:
        chosen = self._fit_range(value)
        if abs(self.settings.level) > dict(self.dialect.ranges)[chosen]:
            raise ScpiError(SETTINGS_CONFLICT)
        self.settings.source_range = chosen
        self.settings.auto_range = False

    def _set_auto_range(self, on: bool) -> None:
        self.settings.auto_range = on
        if on:
            self.settings.source_range = self._fit_range(self.settings.level)

    def _set_current_level(self, value: float) -> None:
        self.settings.current_level = value
        if self.settings.current_source_auto:
            self.settings.current_source_range = fit_range(self.dialect.current_ranges, value)

    def _set_current_source_range(self, value: float) -> None:
        chosen = fit_range(self.dialect.current_ranges, value)
        if abs(self.settings.current_level) > 1.05 * chosen:
            raise ScpiError(SETTINGS_CONFLICT)
        self.settings.current_source_range = chosen
        self.settings.current_source_auto = False

    def _set_current_source_auto(self, on: bool) -> None:
        self.settings.current_source_auto = on
        if on:
            self._set_current_level(self.settings.current_level)

    def set_compliance(self, value: float) -> None:
        self.settings.compliance = max(abs(value), 1e-9)

    def set_voltage_compliance(self, value: float) -> None:
        self.settings.voltage_compliance = abs(value)

    def set_functions(self, call: Call) -> None:
        wanted = self.parse_functions(call)
        s = self.settings
        if s.concurrent:
            wanted = {*s.functions, *wanted}
        elif len(wanted) > 1:
            raise ScpiError(SETTINGS_CONFLICT)
        s.functions = tuple(name for name in FUNCTIONS if name in wanted)

    @staticmethod
    def parse_functions(call: Call) -> set[str]:
        names = [n.strip() for text in call.count(1, 3) for n in to_string(text).split(",")]
        return {function_named(name) for name in names}

    def functions_text(self) -> str:
        return ",".join(f'"{FUNCTIONS[f][1]}"' for f in self.settings.functions)

    # -- command tables ----------------------------------------------------------------------
    def number(
        self,
        pattern: str,
        name: str,
        limits: Limits | Callable[[], Limits],
        put: Callable[[float], None] | None = None,
    ) -> Command:
        """A numeric setting `name` (assigned as given unless `put` says otherwise)."""
        field = Field(lambda: self.settings, name)
        return number_setting(pattern, field.get, put or field.put, limits, setting_text)

    def integer(
        self,
        pattern: str,
        name: str,
        limits: Limits,
        put: Callable[[int], None] | None = None,
    ) -> Command:
        """A whole-number setting `name` (a count), queried as `5`."""
        field = Field(lambda: self.settings, name)
        store = put or field.put
        return number_setting(
            pattern, field.get, lambda n: store(round(n)), limits, lambda n: str(int(n))
        )

    def flag(self, pattern: str, name: str, put: Callable[[bool], None] | None = None) -> Command:
        field = Field(lambda: self.settings, name)
        return flag_setting(pattern, field.get, put or field.put)

    def choice(self, pattern: str, name: str, choices: tuple[str, ...]) -> Command:
        field = Field(lambda: self.settings, name)
        return choice_setting(pattern, choices, field.get, field.put)

    def _shared_commands(self) -> list[Command]:
        volt, curr = "[:SOURce[1]]:VOLTage", "[:SOURce[1]]:CURRent"
        top = self.dialect.max_level
        sense = "[:SENSe[1]]"
        return [
            self.choice("[:SOURce[1]]:FUNCtion[:MODE]", "function", SOURCE_FUNCTIONS),
            self.number(
                f"{volt}[:LEVel][:IMMediate][:AMPLitude]",
                "level",
                self._level_limits,
                self._set_level,
            ),
            self.number(f"{volt}:RANGe", "source_range", Limits(-top, top, 20.0), self._set_range),
            self.flag(f"{volt}:RANGe:AUTO", "auto_range", self._set_auto_range),
            self.number(
                f"{curr}[:LEVel][:IMMediate][:AMPLitude]",
                "current_level",
                self._current_limits,
                self._set_current_level,
            ),
            self.number(
                f"{curr}:RANGe",
                "current_source_range",
                CURRENT_LEVEL_LIMITS,
                self._set_current_source_range,
            ),
            self.flag(f"{curr}:RANGe:AUTO", "current_source_auto", self._set_current_source_auto),
            Command(f"{sense}:FUNCtion[:ON]", self.set_functions, reader(self.functions_text)),
            *(
                self.number(f"{sense}:{function}:NPLCycles", "nplc", NPLC_LIMITS)
                for function in ("CURRent[:DC]", "VOLTage[:DC]", "RESistance")
            ),
            self.number(
                f"{sense}:CURRent[:DC]:RANGe[:UPPer]",
                "current_range",
                COMPLIANCE_LIMITS,
                lambda v: self._set_measure_range("current", abs(v)),
            ),
            self.flag(f"{sense}:CURRent[:DC]:RANGe:AUTO", "current_auto_range"),
            self.number(
                f"{sense}:VOLTage[:DC]:RANGe[:UPPer]",
                "voltage_range",
                Limits(-top, top, 21.0),
                lambda v: self._set_measure_range("voltage", abs(v)),
            ),
            self.flag(f"{sense}:VOLTage[:DC]:RANGe:AUTO", "voltage_auto_range"),
            self.number(
                f"{sense}:RESistance:RANGe[:UPPer]",
                "resistance_range",
                RESISTANCE_RANGE_LIMITS,
                lambda v: self._set_measure_range("resistance", v),
            ),
            self.flag(f"{sense}:RESistance:RANGe:AUTO", "resistance_auto_range"),
            self.choice(":ROUTe:TERMinals", "terminals", ("FRONt", "REAR")),
            self.flag(":OUTPut[1][:STATe]", "output"),
            Command(":ABORt", action(lambda: None), setting=False),
        ]

    def _set_measure_range(self, quantity: str, value: float) -> None:
        setattr(self.settings, f"{quantity}_range", value)
        setattr(self.settings, f"{quantity}_auto_range", False)


def function_named(name: str) -> str:
    """The short name of the sense function `name` (`CURR:DC`, `current`) or -224."""
    for function, (pattern, _) in FUNCTIONS.items():
        if compile_pattern(pattern).fullmatch(":" + name.upper()):
            return function
    raise ScpiError(ILLEGAL_PARAMETER_VALUE)
