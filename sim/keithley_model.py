"""Keithley 2400-series state: the models' ranges, the settings `*RST` restores, and the physics
of the source driving a sensor (the behaviour is described in `teststand.sim.keithley`)."""

from __future__ import annotations

from dataclasses import dataclass

from teststand.sim.physics import SensorModel
from teststand.sim.scpi import SETTINGS_CONFLICT, Limits, ScpiError

NOT_A_NUMBER = 9.91e37
OVERFLOW = 9.9e37
#: Sense functions by short name, with the pattern their names match and their query spelling.
FUNCTIONS = {
    "VOLT": (":VOLTage[:DC]", "VOLT:DC"),
    "CURR": (":CURRent[:DC]", "CURR:DC"),
    "RES": (":RESistance", "RES"),
}

SOURCE_FUNCTIONS = ("VOLTage", "CURRent")
SOURCE_MODES = ("FIXed", "SWEep", "LIST")
SWEEP_SPACINGS = ("LINear", "LOGarithmic")
SWEEP_DIRECTIONS = ("UP", "DOWn")
COMPLIANCE_LIMITS = Limits(-1.05, 1.05, 105e-6)
CURRENT_LEVEL_LIMITS = Limits(-1.05, 1.05, 0.0)
NPLC_LIMITS = Limits(0.01, 10.0, 1.0)
COUNT_LIMITS = Limits(1, 2500, 1)
DELAY_LIMITS = Limits(0.0, 999.9999, 0.0)
SWEEP_POINT_LIMITS = Limits(2, 2500, 2500)
FILTER_COUNT_LIMITS = Limits(1, 100, 10)
RESISTANCE_RANGE_LIMITS = Limits(0.0, 2.1e8, 2.1e5)
#: Current ranges, A (both families; the 2450 adds 10 nA and 100 nA below these).
CURRENT_RANGES = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
#: Largest readings a trigger model may take (arm count × trigger count).
MAX_READINGS = 2500


@dataclass(frozen=True)
class Dialect:
    """What differs between the models: identity, source ranges and the command family."""

    model: str
    manufacturer: str
    firmware: str
    ranges: tuple[tuple[float, float], ...]  # (range, largest level on it), ascending
    current_ranges: tuple[float, ...] = CURRENT_RANGES
    output_off_mode: str = "NORMal"

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
        output_off_mode="GUARd",
    ),
    "2450": Dialect(
        "2450",
        "KEITHLEY INSTRUMENTS",
        "1.7.12b",
        ((0.02, 0.021), *_RANGES_2400, (200.0, 210.0)),
        (1e-8, 1e-7, *CURRENT_RANGES),
    ),
}


@dataclass
class SmuSettings:
    """What `*RST` restores. Levels and limits in V and A; `function` is the source function."""

    source_range: float
    protection: float  # over-voltage protection, V (magnitude)
    current_source_range: float
    output_off_mode: str
    output: bool = False
    function: str = "VOLTage"
    level: float = 0.0
    current_level: float = 0.0
    auto_range: bool = True
    current_source_auto: bool = True
    compliance: float = 105e-6  # current limit while sourcing voltage
    voltage_compliance: float = 21.0  # voltage limit while sourcing current
    nplc: float = 1.0
    terminals: str = "FRONt"
    elements: frozenset[str] = frozenset(("VOLTage", "CURRent", "RESistance", "TIME", "STATus"))
    functions: tuple[str, ...] = ("CURR",)
    concurrent: bool = True
    current_range: float = 105e-6
    current_auto_range: bool = True
    voltage_range: float = 21.0
    voltage_auto_range: bool = True
    resistance_range: float = 2.1e5
    resistance_auto_range: bool = True
    resistance_mode: str = "MANual"
    four_wire: bool = False
    autozero: bool = True
    auto_output_off: bool = False
    volt_mode: str = "FIXed"
    curr_mode: str = "FIXed"
    volt_start: float = 0.0
    volt_stop: float = 0.0
    curr_start: float = 0.0
    curr_stop: float = 0.0
    sweep_points: int = 2500
    sweep_spacing: str = "LINear"
    sweep_direction: str = "UP"
    volt_list: tuple[float, ...] = (0.0,)
    curr_list: tuple[float, ...] = (0.0,)
    trigger_count: int = 1
    arm_count: int = 1
    trigger_delay: float = 0.0
    measure_count: int = 1  # 2450 `:COUNt`
    source_delay: float = 0.0
    source_delay_auto: bool = True
    filter: bool = False
    filter_type: str = "REPeat"
    filter_count: int = 10
    display: bool = True
    readback: bool = True  # 2450 `:SOUR:<f>:READ:BACK`

    @property
    def sources_voltage(self) -> bool:
        return self.function == "VOLTage"

    def bias(self) -> float:
        """The level of the present source function."""
        return self.level if self.sources_voltage else self.current_level

    def mode(self) -> str:
        return self.volt_mode if self.sources_voltage else self.curr_mode

    def sweep_levels(self, count: int) -> list[float]:
        """The source level of each of `count` source-measure cycles (SWEep/LIST repeat)."""
        mode = self.mode()
        if mode == "FIXed":
            return [self.bias()] * count
        if mode == "LIST":
            points = list(self.volt_list if self.sources_voltage else self.curr_list)
        else:
            points = self._sweep_points()
        return [points[index % len(points)] for index in range(count)]

    def _sweep_points(self) -> list[float]:
        start, stop = self.sweep_span()
        n = self.sweep_points
        if self.sweep_spacing == "LOGarithmic":
            if start == 0 or stop == 0 or (start < 0) != (stop < 0):
                raise ScpiError(SETTINGS_CONFLICT)
            points = [start * (stop / start) ** (k / (n - 1)) for k in range(n)]
        else:
            points = [start + (stop - start) * k / (n - 1) for k in range(n)]
        return points if self.sweep_direction == "UP" else points[::-1]

    def sweep_span(self) -> tuple[float, float]:
        """(start, stop) of the present source function's sweep."""
        if self.sources_voltage:
            return self.volt_start, self.volt_stop
        return self.curr_start, self.curr_stop


@dataclass(frozen=True)
class Point:
    """The operating point: terminal voltage and current, and which limits hold them."""

    voltage: float = 0.0
    current: float = 0.0
    compliance: bool = False
    protection: bool = False


@dataclass(frozen=True)
class Reading:
    """One source-measure cycle: the operating point, the source level, time and status word."""

    point: Point
    level: float
    time: float
    status: int


def operating_point(
    settings: SmuSettings, sensor: SensorModel, celsius: float, level: float
) -> Point:
    """Where the SMU sourcing `level` (V or A, by the source function) settles on the sensor."""
    if not settings.output:
        return Point()
    sign = -1.0 if level < 0 else 1.0
    if settings.sources_voltage:
        volts = min(abs(level), settings.protection)
        protected = abs(level) > settings.protection
        amps = sensor.current(volts, celsius)
        if amps <= settings.compliance:
            return Point(sign * volts, sign * amps, False, protected)
        volts = sensor.voltage_for_current(settings.compliance, celsius, volts)
        return Point(sign * volts, sign * settings.compliance, True, protected)
    ceiling = min(settings.voltage_compliance, settings.protection)
    most = sensor.current(ceiling, celsius)
    if most < abs(level):  # even at the voltage limit the sensor takes less than the level
        protected = settings.protection < settings.voltage_compliance
        return Point(sign * ceiling, sign * most, not protected, protected)
    volts = sensor.voltage_for_current(abs(level), celsius, ceiling)
    return Point(sign * volts, sign * abs(level), False, False)


def status_word(settings: SmuSettings, point: Point) -> int:
    """The STAT element: 2 front terminals, 3 compliance, 4 OVP, 11/12/13 sense functions on,
    14 voltage source, 15 current source."""
    bits = {
        2: settings.terminals == "FRONt",
        3: point.compliance,
        4: point.protection,
        11: "VOLT" in settings.functions,
        12: "CURR" in settings.functions,
        13: "RES" in settings.functions,
        14: settings.sources_voltage,
        15: not settings.sources_voltage,
    }
    return sum(1 << bit for bit, on in bits.items() if on)


def resistance(point: Point) -> float:
    return OVERFLOW if point.current == 0 else point.voltage / point.current


def fit_range(ranges: tuple[float, ...], value: float, headroom: float = 1.05) -> float:
    """The smallest range in `ranges` that holds `value` (with the ranges' 5 % over-range)."""
    return next((r for r in ranges if abs(value) <= r * headroom), ranges[-1])


def setting_text(value: float) -> str:
    """A number as setting queries answer it: `1.050000E-04`."""
    return f"{value + 0.0:.6E}"


def reading_text(value: float) -> str:
    """A 2400 reading element: `+1.050000E-04`."""
    return f"{value + 0.0:+.6E}"
