"""Coldbox modelled on the PSI "Tessie" box: eight TEC-cooled module plates on a chiller loop, a
dry-air valve, a lid with an interlock, and a temperature/humidity sensor in the box air.

The line protocol (`get`/`set`/`cmd`, replies `Name = value`, `OK` or `ERR <reason>`) is
specified in full in sim/README.md.

Physics: each plate follows its target with a first-order lag (`time_constant`); the target is
the TEC set point clamped to chiller ± `tec_delta` while its TEC is powered, else the chiller
temperature. The box air is a node of its own: with the lid closed it follows the mean plate
temperature (`air_time_constant`), with the lid open the lab `ambient` (`lid_time_constant`).
Humidity is carried by the dew point of the box air: it falls towards `dry_air_dew_point` while
dry air flows with the lid closed (`flush_time_constant`), leaks back towards
`ambient_dew_point` without flow (`leak_time_constant`), and rises fast with the lid open
(`lid_time_constant`). The sensor reports air temperature and RH (saturating at 100 %); DP is
computed from them by the Magnus formula, so it never exceeds the air temperature.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, TypeVar

from teststand.sim import physics
from teststand.sim.clock import SimClock
from teststand.sim.instrument import SimInstrument
from teststand.sim.lineproto import Refusal, fixed, parse_decimal, parse_integer

T = TypeVar("T")

CHANNELS = 8
SETPOINT_LIMITS = (-40.0, 40.0)
CHANNELLED = frozenset({"Temp", "Temp_Set", "Power"})
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
ON_OFF = {"on": True, "off": False}


def _on_off(flag: bool) -> str:
    return "on" if flag else "off"


def _echo(token: str) -> str:
    """A user's token, safe to put into an ASCII reply."""
    return token[:32].encode("ascii", "replace").decode("ascii")


def _select(values: list[T], channel: int) -> list[T]:
    return values if channel == 0 else [values[channel - 1]]


def _temperature_source(chiller: Callable[[], float] | float) -> Callable[[], float]:
    if callable(chiller):
        return chiller
    value = float(chiller)
    return lambda: value


class ColdBox(SimInstrument):
    """A Tessie-like coldbox whose plates sit on a chiller loop."""

    kind = "coldbox"
    options_help: ClassVar[dict[str, str]] = {
        "chiller": "°C, chiller (water) temperature; a simulated stand passes the Lauda's bath",
        "time_constant": "s, lag of each plate towards its target (default 60)",
        "tec_delta": "K, how far the TECs can pull a plate from the chiller (default 35)",
        "air_time_constant": "s, lag of the box air towards the mean plate (default 120)",
        "ambient": "°C, lab air temperature, reached by the box air with the lid open (20)",
        "ambient_dew_point": "°C, lab air dew point (default 9: 20 °C at 50 %RH)",
        "dry_air_dew_point": "°C, dew point of the dry air (default -60)",
        "flush_time_constant": "s, dew point lag while flushing, lid closed (default 120)",
        "leak_time_constant": "s, dew point lag back to ambient without flow (default 1800)",
        "lid_time_constant": "s, air and dew point lag with the lid open (default 60)",
        "flow_rate": "l/min, dry-air flow with valve0 on (default 20)",
    }

    def __init__(
        self,
        clock: SimClock | None = None,
        *,
        chiller: Callable[[], float] | float = 20.0,
        time_constant: float = 60.0,
        tec_delta: float = 35.0,
        air_time_constant: float = 120.0,
        ambient: float = 20.0,
        ambient_dew_point: float = 9.0,
        dry_air_dew_point: float = -60.0,
        flush_time_constant: float = 120.0,
        leak_time_constant: float = 1800.0,
        lid_time_constant: float = 60.0,
        flow_rate: float = 20.0,
    ) -> None:
        super().__init__(clock)
        self._chiller = _temperature_source(chiller)
        self.time_constant = float(time_constant)
        self.tec_delta = float(tec_delta)
        self.air_time_constant = float(air_time_constant)
        self.ambient = float(ambient)
        self.ambient_dew_point = float(ambient_dew_point)
        self.dry_air_dew_point = float(dry_air_dew_point)
        self.flush_time_constant = float(flush_time_constant)
        self.leak_time_constant = float(leak_time_constant)
        self.lid_time_constant = float(lid_time_constant)
        self.flow_rate = float(flow_rate)
        self._water = self._chiller()
        self._plates = [self._water] * CHANNELS
        self._setpoints = [20.0] * CHANNELS
        self._power = [False] * CHANNELS
        self._air = self._water
        self._dew = self.ambient_dew_point
        self._valve = False
        self._lid_open = False
        self._flow_failure = False
        self._interlock_injected = False
        self._normal_air: tuple[float, float] | None = None  # (dry air, lab) during humid_air
        self._getters = self._getter_table()

    def _getter_table(self) -> dict[str, Callable[[int], str]]:
        """Reply value of every readable name, given the channel (0 = all)."""
        return {
            "Temp": lambda ch: ",".join(fixed(t) for t in _select(self._plates, ch)),
            "Temp_Set": lambda ch: ",".join(fixed(t) for t in _select(self._setpoints, ch)),
            "Power": lambda ch: ",".join(_on_off(p) for p in _select(self._power, ch)),
            "Temp_Air": lambda _: fixed(self._air),
            "Temp_W": lambda _: fixed(self._water),
            "RH": lambda _: fixed(self.humidity),
            "DP": lambda _: fixed(self.dew_point),
            "Lid": lambda _: "open" if self._lid_open else "closed",
            "valve0": lambda _: _on_off(self._valve),
            "Flow": lambda _: fixed(self.flow, 1),
            "Interlock": lambda _: "tripped" if self.interlock_tripped else "ok",
            "Status": lambda _: ";".join(f"{n}={self._getters[n](0)}" for n in STATUS_FIELDS),
        }

    # -- state other simulators, tests and consoles read ----------------------------------------
    @property
    def temperature(self) -> float:
        """Mean module-plate temperature, °C."""
        return sum(self._plates) / CHANNELS

    def plate_temperature(self, channel: int) -> float:
        """Temperature of plate `channel` (1…8), °C."""
        with self.lock:
            return self._plates[channel - 1]

    @property
    def humidity(self) -> float:
        """Relative humidity of the box air, %."""
        return physics.relative_humidity(self._air, self._dew)

    @property
    def dew_point(self) -> float:
        """Dew point as the sensor derives it from air temperature and RH, °C."""
        return physics.dew_point(self._air, self.humidity)

    @property
    def flow(self) -> float:
        """Dry-air flow, l/min."""
        return self.flow_rate if self._valve and not self._flow_failure else 0.0

    @property
    def interlock_tripped(self) -> bool:
        return self._lid_open or self._interlock_injected

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "plates": list(self._plates),
                "setpoints": list(self._setpoints),
                "power": list(self._power),
                "air": self._air,
                "chiller": self._water,
                "rh": self.humidity,
                "dew_point": self.dew_point,
                "lid_open": self._lid_open,
                "valve0": self._valve,
                "flow": self.flow,
                "interlock": self.interlock_tripped,
            }

    # -- controls for tests and consoles (thread-safe) ------------------------------------------
    def open_lid(self) -> None:
        with self._control():
            self._lid_open = True

    def close_lid(self) -> None:
        with self._control():
            self._lid_open = False

    def set_flow_failure(self, failed: bool) -> None:
        """A failed flow reads 0 l/min and stops the flush while valve0 stays on."""
        with self._control():
            self._flow_failure = failed

    def set_interlock(self, tripped: bool) -> None:
        with self._control():
            self._interlock_injected = tripped

    def set_ambient_dew_point(self, value: float) -> None:
        with self._control():
            self.ambient_dew_point = float(value)

    def humid_air(self, dew_point: float | None) -> None:
        """A humid spell: the box air's dew point jumps to `dew_point`, and the air that flows
        in (the dry-air supply and the lab's) stays that wet until `humid_air(None)`; then the
        dry air flushes it out (or it leaks back to the lab's) as usual."""
        with self._control():
            if dew_point is None:
                if self._normal_air is not None:
                    self.dry_air_dew_point, self.ambient_dew_point = self._normal_air
                    self._normal_air = None
                return
            if self._normal_air is None:
                self._normal_air = (self.dry_air_dew_point, self.ambient_dew_point)
            self._dew = self.dry_air_dew_point = self.ambient_dew_point = float(dew_point)

    @contextmanager
    def _control(self) -> Iterator[None]:
        """Change state at the present simulated time; a tripped interlock cuts TEC power."""
        with self.lock:
            self.tick()
            yield
            if self.interlock_tripped:
                self._power = [False] * CHANNELS

    # -- physics --------------------------------------------------------------------------------
    def advance(self, dt: float) -> None:
        self._water = self._chiller()
        self._plates = [
            physics.first_order_lag(t, self._plate_target(i), dt, self.time_constant)
            for i, t in enumerate(self._plates)
        ]
        air_target, air_tau = (
            (self.ambient, self.lid_time_constant)
            if self._lid_open
            else (self.temperature, self.air_time_constant)
        )
        self._air = physics.first_order_lag(self._air, air_target, dt, air_tau)
        dew_target, dew_tau = self._humidity_drive()
        self._dew = physics.first_order_lag(self._dew, dew_target, dt, dew_tau)

    def _plate_target(self, index: int) -> float:
        if not self._power[index]:
            return self._water
        low, high = self._water - self.tec_delta, self._water + self.tec_delta
        return min(max(self._setpoints[index], low), high)

    def _humidity_drive(self) -> tuple[float, float]:
        """Dew point the box air is heading for, and how fast."""
        if self._lid_open:
            return self.ambient_dew_point, self.lid_time_constant
        if self.flow > 0:
            return self.dry_air_dew_point, self.flush_time_constant
        return self.ambient_dew_point, self.leak_time_constant

    # -- the command path -----------------------------------------------------------------------
    def respond(self, line: str) -> str | None:
        try:
            return self._dispatch(_move_tec_to_end(line.split()))
        except Refusal as refusal:
            return f"ERR {refusal.reply}"

    def _dispatch(self, tokens: list[str]) -> str:
        if not tokens:
            raise Refusal("empty command")
        verb, args = tokens[0].lower(), tokens[1:]
        if verb not in ("get", "set", "cmd"):
            raise Refusal(f"unknown command: {_echo(tokens[0])}")
        if not args:
            raise Refusal("missing parameter")
        if verb == "get":
            return self._get(args[0], args[1:])
        if verb == "set":
            return self._set(args[0], args[1:])
        return self._cmd(args[0], args[1:])

    def _get(self, name: str, extra: list[str]) -> str:
        canonical = _canonical(name, self._getters)
        channel = _channel(canonical, extra)
        return f"{canonical} = {self._getters[canonical](channel)}"

    def _set(self, name: str, args: list[str]) -> str:
        setters = {"Temp_Set": self._set_temperature, "valve0": self._set_valve}
        canonical = _canonical(name, self._getters)
        if canonical not in setters:
            raise Refusal(f"read only: {canonical}")
        self._refuse_if_local()
        if not args:
            raise Refusal("missing value")
        channel = _channel(canonical, args[1:])
        setters[canonical](args[0], channel)
        return "OK"

    def _cmd(self, name: str, extra: list[str]) -> str:
        commands = {"Power_On": True, "Power_Off": False}
        canonical = _canonical(name, commands)
        channel = _channel("Power", extra)
        self._refuse_if_local()
        on = commands[canonical]
        if on and self.interlock_tripped:
            raise Refusal("interlock tripped")
        for index in _select(list(range(CHANNELS)), channel):
            self._power[index] = on
        return "OK"

    def _refuse_if_local(self) -> None:
        if self.local:
            raise Refusal("local control")

    def _set_temperature(self, raw: str, channel: int) -> None:
        value = parse_decimal(raw)
        if value is None:
            raise Refusal(f"bad value: {_echo(raw)}")
        low, high = SETPOINT_LIMITS
        if not low <= value <= high:
            raise Refusal(f"out of range: Temp_Set {low:g}..{high:g}")
        for index in _select(list(range(CHANNELS)), channel):
            self._setpoints[index] = value

    def _set_valve(self, raw: str, channel: int) -> None:
        state = ON_OFF.get(raw.lower())
        if state is None:
            raise Refusal(f"bad value: {_echo(raw)}")
        self._valve = state


def _canonical(name: str, known: dict[str, Any]) -> str:
    """The documented spelling of `name` (case-insensitive match)."""
    for candidate in known:
        if candidate.lower() == name.lower():
            return candidate
    raise Refusal(f"unknown parameter: {_echo(name)}")


def _channel(name: str, extra: list[str]) -> int:
    """The channel in the tokens left after the value (none: 0, all channels)."""
    if not extra:
        return 0
    if len(extra) > 1 or name not in CHANNELLED:
        raise Refusal("too many arguments")
    channel = parse_integer(extra[0])
    if channel is None or not 0 <= channel <= CHANNELS:
        raise Refusal(f"bad channel: {_echo(extra[0])}")
    return channel


def _move_tec_to_end(tokens: list[str]) -> list[str]:
    """Tessie's `tec N` may stand before or after the command: make it a trailing channel."""
    for index, token in enumerate(tokens[:-1]):
        if token.lower() == "tec":
            return tokens[:index] + tokens[index + 2 :] + [tokens[index + 1]]
    return tokens
