"""One CAEN HV channel: ramping output, OVC and trips, settings, and its reply formats.

The behaviour is described in `teststand.sim.caen`'s docstring.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from teststand.sim.caen_wire import NUMBER, Refusal
from teststand.sim.physics import SensorModel, ramp

#: Longest physics sub-step (simulated s): OVC and trips are resolved to this.
MAX_STEP = 0.05
#: TRIP value meaning "never trip" (constant-current mode).
TRIP_INFINITE = 1000.0
#: OVV/UNV band around the set point, V.
REGULATION_BAND = 2.5
RAMP_LIMITS = (1.0, 500.0)
TRIP_LIMITS = (0.0, TRIP_INFINITE)
DEFAULT_ISET = 100.0  # µA
DEFAULT_RAMP = 10.0  # V/s
DEFAULT_TRIP = 10.0  # s
LOW_RANGE_DIVISOR = 10.0

#: Settable numeric channel parameters and their decimals (resolution).
_DECIMALS = {"VSET": 1, "ISET": 2, "MAXV": 0, "RUP": 0, "RDW": 0, "TRIP": 1}
#: Settable enumerated channel parameters and their values.
_CHOICES = {"PDWN": ("RAMP", "KILL"), "IMRANGE": ("HIGH", "LOW")}
#: SET-only channel commands without a value.
_ACTIONS = ("ON", "OFF")


def _volts(value: float) -> str:
    return f"{value:06.1f}"


def _number(value: float) -> str:
    return f"{value:g}"


class Channel:
    """One HV output driving one sensor. Voltages are magnitudes; ISET is in µA."""

    def __init__(self, polarity: str, sensor: SensorModel, v_max: float, i_max: float) -> None:
        self.polarity = polarity
        self.sensor = sensor
        self.v_max = v_max
        self.i_max = i_max
        self.temperature = 20.0
        self.vset = 0.0
        self.iset = DEFAULT_ISET
        self.maxv = v_max
        self.rup = DEFAULT_RAMP
        self.rdw = DEFAULT_RAMP
        self.trip = DEFAULT_TRIP
        self.pdwn = "RAMP"
        self.imrange = "HIGH"
        self.on = False
        self.tripped = False
        self.ovc = False
        self.ovc_time = 0.0
        self.vmon = 0.0
        #: Fault injection: a failed output stage holds VMON where it is, whatever VSET says.
        self.stuck = False

    # -- physics ---------------------------------------------------------------------------
    def target(self) -> float:
        return min(self.vset, self.maxv) if self.on else 0.0

    def advance(self, dt: float, temperature: float) -> None:
        """Advance by `dt` s in steps of at most MAX_STEP; settled states are skipped over."""
        self.temperature = temperature
        if self.stuck:
            return
        remaining = dt
        while remaining > 0:
            step = min(MAX_STEP, remaining)
            self._step(step)
            remaining -= step
            if self.ovc and self.target() >= self.vmon:
                remaining = self._hold(remaining)
            elif not self.ovc and self.vmon == self.target():
                return

    def _step(self, dt: float) -> None:
        target = self.target()
        rate = self.rup if self.on and target > self.vmon else self.rdw
        wanted = ramp(self.vmon, target, dt, rate)
        limit = self.iset * 1e-6
        if self.on and self.sensor.current(wanted, self.temperature) >= limit:
            held = self.sensor.voltage_for_current(limit, self.temperature, wanted)
            self.vmon = min(wanted, held)
            self.ovc_time = self.ovc_time + dt if self.ovc else 0.0
            self.ovc = True
            if self.trip < TRIP_INFINITE and self.ovc_time >= self.trip:
                self.trip_off()
        else:
            self.vmon = wanted
            self.ovc = False
            self.ovc_time = 0.0

    def _hold(self, remaining: float) -> float:
        """Pass time in OVC with the voltage held; return the time left after a trip, or 0."""
        if self.trip >= TRIP_INFINITE or remaining < self.trip - self.ovc_time:
            self.ovc_time += remaining
            return 0.0
        remaining -= self.trip - self.ovc_time
        self.trip_off()
        return remaining

    def switch_on(self) -> None:
        if not self.on:
            self.ovc_time = 0.0
        self.on = True
        self.tripped = False

    def switch_off(self) -> None:
        self.on = False
        self.ovc = False
        self.ovc_time = 0.0
        if self.pdwn == "KILL" and not self.stuck:
            self.vmon = 0.0

    def trip_off(self) -> None:
        self.tripped = True
        self.switch_off()

    def clear_alarm(self) -> None:
        self.tripped = False
        self.ovc_time = 0.0

    # -- readings --------------------------------------------------------------------------
    def current_ua(self) -> float:
        return self.sensor.current(self.vmon, self.temperature) * 1e6

    def imon_text(self) -> str:
        if self.imrange == "LOW":
            return f"{min(self.current_ua(), self.i_max / LOW_RANGE_DIVISOR):08.3f}"
        return f"{min(self.current_ua(), self.i_max):07.2f}"

    def flags(self) -> list[str]:
        """Names of the status conditions now true (a dialect maps them to bits)."""
        target = self.target()
        held = self.on and self.ovc
        conditions = {
            "ON": self.on,
            "RUP": not held and self.vmon < target,
            "RDW": self.vmon > target,
            "OVC": held,
            "TRIP": self.tripped,
            "MAXV": self.on and self.vset > self.maxv,
        }
        ramping = conditions["RUP"] or conditions["RDW"]
        if self.on and not ramping:
            conditions["OVV"] = self.vmon > target + REGULATION_BAND
            conditions["UNV"] = self.vmon < target - REGULATION_BAND
        return [name for name, true in conditions.items() if true]

    # -- settings --------------------------------------------------------------------------
    def limits(self, parameter: str) -> tuple[float, float]:
        if parameter == "VSET":
            return 0.0, min(self.maxv, self.v_max)
        if parameter == "ISET":
            return 0.0, self.i_max
        if parameter == "MAXV":
            return 0.0, self.v_max
        if parameter == "TRIP":
            return TRIP_LIMITS
        return RAMP_LIMITS

    def check(self, parameter: str, raw: str | None) -> float | str | None:
        """The value `raw` stands for, or `Refusal("VAL")`."""
        if parameter in _ACTIONS:
            if raw is not None:
                raise Refusal("VAL")
            return None
        if raw is None:
            raise Refusal("VAL")
        if parameter in _CHOICES:
            if raw not in _CHOICES[parameter]:
                raise Refusal("VAL")
            return raw
        if not NUMBER.fullmatch(raw):
            raise Refusal("VAL")
        value = round(float(raw), _DECIMALS[parameter])
        low, high = self.limits(parameter)
        if not low <= value <= high:
            raise Refusal("VAL")
        return value

    def apply(self, parameter: str, value: float | str | None) -> None:
        """Store a checked value (attribute named like the parameter) or run ON/OFF."""
        if parameter == "ON":
            self.switch_on()
        elif parameter == "OFF":
            self.switch_off()
        else:
            setattr(self, parameter.lower(), value)
            if parameter == "TRIP":
                self.ovc_time = 0.0

    def info(self, parameter: str) -> str:
        v, i = _number(self.v_max), _number(self.i_max)
        low = self.imrange == "LOW"
        imon = f"0;{_number(self.i_max / LOW_RANGE_DIVISOR)};3;0.001" if low else f"0;{i};2;0.01"
        volts = f"0;{v};1;0.1;0;V;;"
        table = {
            "VSET": f"NUM;RW;{volts}",
            "VMIN": f"NUM;R;{volts}",
            "VMAX": f"NUM;R;{volts}",
            "VDEC": "NUM;R;0;3;0;1;0;;;",
            "VMON": f"NUM;R;{volts}",
            "ISET": f"NUM;RW;0;{i};2;0.01;-6;A;;",
            "IMON": f"NUM;R;{imon};-6;A;;",
            "IMRANGE": "ENUM;RW;;;;;;;HIGH;LOW",
            "MAXV": f"NUM;RW;0;{v};0;1;0;V;;",
            "RUP": "NUM;RW;1;500;0;1;0;V/s;;",
            "RDW": "NUM;RW;1;500;0;1;0;V/s;;",
            "TRIP": "NUM;RW;0;1000;1;0.1;0;s;;",
            "PDWN": "ENUM;RW;;;;;;;KILL;RAMP",
            "POL": "ENUM;R;;;;;;;+;-",
            "STAT": "STAT;R;0;16383;0;1;0;;;",
        }
        return table.get(parameter, "CMD;W;;;;;;;;")


#: Readable channel parameters.
READERS: dict[str, Callable[[Channel], str]] = {
    "VSET": lambda c: _volts(c.vset),
    "VMIN": lambda c: _volts(0.0),
    "VMAX": lambda c: _volts(c.v_max),
    "VDEC": lambda c: "1",
    "VMON": lambda c: _volts(c.vmon),
    "ISET": lambda c: f"{c.iset:07.2f}",
    "IMON": Channel.imon_text,
    "IMRANGE": lambda c: c.imrange,
    "MAXV": lambda c: f"{c.maxv:04.0f}",
    "RUP": lambda c: f"{c.rup:03.0f}",
    "RDW": lambda c: f"{c.rdw:03.0f}",
    "TRIP": lambda c: f"{c.trip:06.1f}",
    "PDWN": lambda c: c.pdwn,
    "POL": lambda c: c.polarity,
}
WRITABLE = frozenset(_DECIMALS) | frozenset(_CHOICES) | frozenset(_ACTIONS)
KNOWN = frozenset(READERS) | WRITABLE | {"STAT"}


def per_channel(value: float | Sequence[float], count: int, name: str) -> list[float]:
    values = [float(value)] * count if isinstance(value, int | float) else [*map(float, value)]
    if len(values) != count:
        raise ValueError(f"{name}: expected one value or {count}, got {len(values)}")
    return values


def polarities(polarity: str | Sequence[str], count: int) -> list[str]:
    signs = list(polarity)
    if len(signs) == 1:
        signs *= count
    if len(signs) != count or any(sign not in ("+", "-") for sign in signs):
        raise ValueError(f"polarity: expected '+' or '-', once or {count} times, got {polarity!r}")
    return signs
