"""The 2400/2410 command family: compliance, signal-oriented measurement (`:CONF`, `:MEAS?`,
`:READ?`, `:FETC?`), the trigger model's counts, `:FORM:ELEM`, source sweeps and lists, and the
`:SYST`/`:SOUR:CLE`/`:OUTP:SMOD` settings. The behaviour is described in `teststand.sim.keithley`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from teststand.sim.keithley_model import (
    COMPLIANCE_LIMITS,
    COUNT_LIMITS,
    CURRENT_LEVEL_LIMITS,
    DELAY_LIMITS,
    FILTER_COUNT_LIMITS,
    FUNCTIONS,
    MAX_READINGS,
    NOT_A_NUMBER,
    SOURCE_MODES,
    SWEEP_DIRECTIONS,
    SWEEP_POINT_LIMITS,
    SWEEP_SPACINGS,
    Reading,
    reading_text,
    resistance,
    setting_text,
)
from teststand.sim.scpi import (
    DATA_OUT_OF_RANGE,
    SETTINGS_CONFLICT,
    Call,
    Command,
    ErrorKind,
    Field,
    Limits,
    ScpiError,
    action,
    number_setting,
    reader,
    short_form,
    to_choice,
    to_number,
)

if TYPE_CHECKING:
    from teststand.sim.keithley import Keithley2410

ELEMENTS = ("VOLTage", "CURRent", "RESistance", "TIME", "STATus")
STALE_DATA = ErrorKind(-230, "Data corrupt or stale")
MAX_LIST_POINTS = 100


def commands_2400(smu: Keithley2410) -> list[Command]:
    return [*_measurement(smu), *_limits(smu), *_sweeps(smu), *_system(smu)]


# -- readings ----------------------------------------------------------------------------------


def reading_elements(smu: Keithley2410, reading: Reading) -> str:
    """One reading as its `:FORM:ELEM` elements, in the canonical order."""
    s = smu.settings
    point = reading.point
    values = {
        "VOLTage": point.voltage if "VOLT" in s.functions or s.sources_voltage else NOT_A_NUMBER,
        "CURRent": point.current
        if "CURR" in s.functions or not s.sources_voltage
        else NOT_A_NUMBER,
        "RESistance": resistance(point) if "RES" in s.functions else NOT_A_NUMBER,
        "TIME": reading.time,
        "STATus": float(reading.status),
    }
    return ",".join(reading_text(values[e]) for e in ELEMENTS if e in s.elements)


def _initiate(smu: Keithley2410) -> None:
    smu.require_output()
    s = smu.settings
    smu.take_readings(s.arm_count * s.trigger_count)


def _fetch(smu: Keithley2410) -> str:
    if not smu.readings:
        raise ScpiError(STALE_DATA)
    return ",".join(reading_elements(smu, reading) for reading in smu.readings)


def _latest(smu: Keithley2410) -> str:
    if not smu.readings:
        raise ScpiError(STALE_DATA)
    return reading_elements(smu, smu.readings[-1])


def _read(smu: Keithley2410) -> str:
    _initiate(smu)
    return _fetch(smu)


def _configure(smu: Keithley2410, function: str | None) -> None:
    """`:CONF:<function>`: one-shot set-up of `function` (None: keep the functions)."""
    s = smu.settings
    if function is not None:
        s.functions = (function,)
    s.arm_count = s.trigger_count = 1
    s.trigger_delay = 0.0
    s.output = True


def _measure(smu: Keithley2410, function: str | None) -> str:
    if smu.local:
        raise ScpiError(SETTINGS_CONFLICT)
    _configure(smu, function)
    return _read(smu)


def _count_setting(smu: Keithley2410, pattern: str, name: str, other: str) -> Command:
    """A trigger-model count; arm count × trigger count may not exceed MAX_READINGS."""

    def put(count: int) -> None:
        if count * getattr(smu.settings, other) > MAX_READINGS:
            raise ScpiError(SETTINGS_CONFLICT)
        setattr(smu.settings, name, count)

    return smu.integer(pattern, name, COUNT_LIMITS, put)


def _measurement(smu: Keithley2410) -> list[Command]:
    per_function: list[Command] = []
    for function, (pattern, _) in FUNCTIONS.items():
        per_function += [
            Command(f":CONFigure{pattern}", action(partial(_configure, smu, function))),
            Command(f":MEASure{pattern}", read=reader(partial(_measure, smu, function))),
        ]
    return [
        *per_function,
        Command(":CONFigure", read=reader(smu.functions_text)),
        Command(":MEASure", read=reader(partial(_measure, smu, None))),
        Command(":READ", read=reader(lambda: _read(smu))),
        Command(":FETCh", read=reader(lambda: _fetch(smu))),
        Command("[:SENSe[1]]:DATA[:LATest]", read=reader(lambda: _latest(smu))),
        Command(":INITiate[:IMMediate]", action(lambda: _initiate(smu)), setting=False),
        _count_setting(smu, ":TRIGger[:SEQuence[1]]:COUNt", "trigger_count", "arm_count"),
        _count_setting(smu, ":ARM[:SEQuence[1]][:LAYer[1]]:COUNt", "arm_count", "trigger_count"),
        smu.number(":TRIGger[:SEQuence[1]]:DELay", "trigger_delay", DELAY_LIMITS),
        Command(":FORMat:ELEMents[:SENSe[1]]", _elements_writer(smu), reader(_elements_text(smu))),
    ]


def _elements_writer(smu: Keithley2410) -> Callable[[Call], None]:
    def write(call: Call) -> None:
        chosen = [to_choice(text, ELEMENTS) for text in call.count(1, len(ELEMENTS))]
        smu.settings.elements = frozenset(chosen)

    return write


def _elements_text(smu: Keithley2410) -> Callable[[], str]:
    return lambda: ",".join(short_form(e) for e in ELEMENTS if e in smu.settings.elements)


# -- limits ------------------------------------------------------------------------------------


def _limits(smu: Keithley2410) -> list[Command]:
    top = smu.dialect.max_level
    sense = "[:SENSe[1]]"

    def remove(call: Call) -> None:
        unwanted = smu.parse_functions(call)
        smu.settings.functions = tuple(f for f in smu.settings.functions if f not in unwanted)

    return [
        smu.number(
            f"{sense}:CURRent[:DC]:PROTection[:LEVel]",
            "compliance",
            COMPLIANCE_LIMITS,
            smu.set_compliance,
        ),
        Command(
            f"{sense}:CURRent[:DC]:PROTection:TRIPped",
            read=reader(partial(smu.limit_tripped, True)),
        ),
        smu.number(
            f"{sense}:VOLTage[:DC]:PROTection[:LEVel]",
            "voltage_compliance",
            Limits(-top, top, 21.0),
            smu.set_voltage_compliance,
        ),
        Command(
            f"{sense}:VOLTage[:DC]:PROTection:TRIPped",
            read=reader(partial(smu.limit_tripped, False)),
        ),
        smu.number(
            "[:SOURce[1]]:VOLTage:PROTection[:LEVel]",
            "protection",
            Limits(-top, top, top),
            lambda volts: setattr(smu.settings, "protection", abs(volts)),
        ),
        Command(f"{sense}:FUNCtion:OFF", remove),
        Command(
            f"{sense}:FUNCtion:OFF:ALL", action(lambda: setattr(smu.settings, "functions", ()))
        ),
        smu.flag(f"{sense}:FUNCtion:CONCurrent", "concurrent"),
        smu.choice(f"{sense}:RESistance:MODE", "resistance_mode", ("MANual", "AUTO")),
    ]


# -- sweeps and lists --------------------------------------------------------------------------


def _sweeps(smu: Keithley2410) -> list[Command]:
    top = smu.dialect.max_level
    commands: list[Command] = [
        smu.integer("[:SOURce[1]]:SWEep:POINts", "sweep_points", SWEEP_POINT_LIMITS),
        smu.choice("[:SOURce[1]]:SWEep:SPACing", "sweep_spacing", SWEEP_SPACINGS),
        smu.choice("[:SOURce[1]]:SWEep:DIRection", "sweep_direction", SWEEP_DIRECTIONS),
    ]
    for quantity, limits in (("volt", Limits(-top, top, 0.0)), ("curr", CURRENT_LEVEL_LIMITS)):
        path = f"[:SOURce[1]]:{'VOLTage' if quantity == 'volt' else 'CURRent'}"
        commands += [
            smu.choice(f"{path}:MODE", f"{quantity}_mode", SOURCE_MODES),
            smu.number(f"{path}:STARt", f"{quantity}_start", limits),
            smu.number(f"{path}:STOP", f"{quantity}_stop", limits),
            *_span_commands(smu, path, quantity, limits),
            *_list_commands(smu, quantity, limits),
        ]
    return commands


def _span_commands(smu: Keithley2410, path: str, quantity: str, limits: Limits) -> list[Command]:
    start = Field(lambda: smu.settings, f"{quantity}_start")
    stop = Field(lambda: smu.settings, f"{quantity}_stop")
    width = 2 * (limits.high - limits.low)

    def span() -> float:
        return float(stop.get() - start.get())

    def center() -> float:
        return float(stop.get() + start.get()) / 2

    def place(middle: float, wide: float) -> None:
        low, high = middle - wide / 2, middle + wide / 2
        if not (limits.low <= min(low, high) and max(low, high) <= limits.high):
            raise ScpiError(DATA_OUT_OF_RANGE)
        start.put(low)
        stop.put(high)

    def step() -> float:
        return span() / (smu.settings.sweep_points - 1)

    def put_step(value: float) -> None:
        if value == 0:
            raise ScpiError(DATA_OUT_OF_RANGE)
        points = round(abs(span() / value)) + 1
        if not SWEEP_POINT_LIMITS.low <= points <= SWEEP_POINT_LIMITS.high:
            raise ScpiError(SETTINGS_CONFLICT)
        smu.settings.sweep_points = points

    return [
        number_setting(f"{path}:STEP", step, put_step, Limits(-width, width, 0.0), setting_text),
        number_setting(
            f"{path}:SPAN",
            span,
            lambda w: place(center(), w),
            Limits(-width, width, 0.0),
            setting_text,
        ),
        number_setting(f"{path}:CENTer", center, lambda c: place(c, span()), limits, setting_text),
    ]


def _list_commands(smu: Keithley2410, quantity: str, limits: Limits) -> list[Command]:
    field = Field(lambda: smu.settings, f"{quantity}_list")
    path = f"[:SOURce[1]]:LIST:{'VOLTage' if quantity == 'volt' else 'CURRent'}"

    def write(call: Call) -> None:
        field.put(tuple(to_number(text, limits) for text in call.count(1, MAX_LIST_POINTS)))

    return [
        Command(path, write, reader(lambda: ",".join(setting_text(v) for v in field.get()))),
        Command(f"{path}:POINts", read=reader(lambda: str(len(field.get())))),
    ]


# -- system ------------------------------------------------------------------------------------


def _system(smu: Keithley2410) -> list[Command]:
    return [
        Command(":SYSTem:TIME", read=reader(lambda: reading_text(smu.timestamp()))),
        Command(":SYSTem:TIME:RESet", action(smu.reset_time)),
        Command(":SYSTem:PRESet", action(smu.reset)),
        smu.flag(":SYSTem:RSENse", "four_wire"),
        smu.flag(":SYSTem:AZERo[:STATe]", "autozero"),
        Command(
            "[:SOURce[1]]:CLEar[:IMMediate]", action(lambda: setattr(smu.settings, "output", False))
        ),
        smu.flag("[:SOURce[1]]:CLEar:AUTO", "auto_output_off"),
        smu.choice(
            ":OUTPut[1]:SMODe", "output_off_mode", ("HIMPedance", "NORMal", "ZERO", "GUARd")
        ),
        smu.number("[:SOURce[1]]:DELay", "source_delay", DELAY_LIMITS, manual_delay(smu)),
        smu.flag("[:SOURce[1]]:DELay:AUTO", "source_delay_auto"),
        smu.flag("[:SENSe[1]]:AVERage[:STATe]", "filter"),
        smu.choice("[:SENSe[1]]:AVERage:TCONtrol", "filter_type", ("REPeat", "MOVing")),
        smu.integer("[:SENSe[1]]:AVERage:COUNt", "filter_count", FILTER_COUNT_LIMITS),
        smu.flag(":DISPlay:ENABle", "display"),
    ]


def manual_delay(smu: Keithley2410) -> Callable[[float], None]:
    """`:SOUR:DEL <n>`: a manual source delay turns auto delay off."""

    def put(seconds: float) -> None:
        smu.settings.source_delay = seconds
        smu.settings.source_delay_auto = False

    return put
