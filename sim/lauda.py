"""Lauda chiller (ECO, Proline, Integral XT, Variocool command set), see PROTOCOLS.md.

Wire format as simulated:
- Commands are upper case as in the manual; a space and `_` are interchangeable; surrounding
  blanks are ignored. Replies end in CRLF.
- With `address` set (RS-485) a command must start with `A<nnn>_` (three digits, e.g. `A005_`);
  commands for another address, or without the prefix, get no reply at all. Every reply then
  carries the same prefix: `A005_OK`, `A005_020.00`, `A005_ERR_3`. Without `address` (RS-232)
  a prefixed command is a wrong command (`ERR_3`).
- Temperatures read as a sign (negatives only), at least three integer digits and two decimals:
  `020.00`, `-010.50`, `000.00`. `IN_PV_10` is an integer in 0.001 °C (`20000`, `-10500`).
  Pump pressure reads `0.30` (bar), levels and modes read as bare integers (`3`).
- Written temperatures take up to 4 digits before and 2 after the decimal point, optional sign.
- Writes, `START` and `STOP` answer `OK`.

Errors:
- `ERR_2`: command longer than 80 characters (after the address prefix).
- `ERR_3`: unknown command (also lower case, or a value appended to a read).
- `ERR_5`: value missing or not a number in the allowed format.
- `ERR_6`: value out of range: set point outside TiL…TiH, a limit outside the model range, pump
  level outside 1…8, a mode outside its list.
- `ERR_8`: `IN_PV_01` with control source 3 (serial) before any `OUT_PV_05` value arrived.
- `ERR_32`: `OUT_SP_04` (TiH) at or below TiL, or `OUT_SP_05` (TiL) at or above TiH.
- `ERR_33`: no external sensor: `IN_PV_03` or `OUT_MODE_01_1` without the Pt100;
  `OUT_MODE_01_2` always (no analogue input is simulated).
- `ERR_36`: any write, `START` or `STOP` while in LOCAL control (fault `local`).
- `ERR_38`: a set point write beyond `setpoint_limit_per_hour` accepted writes in the last
  simulated hour (every accepted `OUT_SP_00` counts, even to the same value).

Communication watchdog (PRO, Integral and Variocool interface modules; `communication_watchdog`
false for a model without it: its commands are then `ERR_3`):
- `OUT_SP_08_n` sets the timeout in whole seconds (0 switches monitoring off, at most 3600 as
  simulated), `IN_SP_08` reads it. `OUT_SP_07_xxx.xx` sets the Safe Mode set point (within
  TiL…TiH, factory 20 °C), `IN_SP_07` reads it.
- Any command addressed to the chiller counts as communication. When none arrives for longer than
  the timeout, alarm 22 is raised: the chiller stops (pump, heating and cooling: standby) and
  `STAT` shows the alarm, unless Safe Mode is activated (`safe_mode`, a device-menu setting not
  reachable over the interface): then it sets the Safe Mode set point once, keeps controlling,
  and `STAT` shows a warning (503). Writing `OUT_SP_08` again clears the alarm or warning.

Physics: while running the bath follows the set point as a first-order lag (`time_constant`);
with cooling mode 0 (off) it cannot go below `ambient`. In standby it drifts to `ambient` with the
slower `standby_time_constant`. Narrowing TiL/TiH pulls the set point inside the new limits. The
controlled temperature (`IN_PV_01`) is the bath, the Pt100, or the last `OUT_PV_05` value, by the
control source; the bath itself always follows the set point. The Pt100 reads the bath temperature.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from teststand.sim.clock import SimClock
from teststand.sim.instrument import SimInstrument
from teststand.sim.lineproto import Refusal, fixed, parse_decimal, parse_integer
from teststand.sim.physics import first_order_lag

MAX_COMMAND = 80
HOUR = 3600.0
PUMP_LEVELS = range(1, 9)
BATH_LEVEL = 8
VERSION = "1.36"
SAFE_SETPOINT = 20.0  # °C, the factory Safe Mode set point
COMM_TIMEOUTS = range(0, 3601)  # s
_WRITE = re.compile(r"(OUT_(?:SP|PV|MODE)_[0-9]{2})(?:_(.*))?")

ERR_OVERFLOW = "ERR_2"
ERR_COMMAND = "ERR_3"
ERR_SYNTAX = "ERR_5"
ERR_VALUE = "ERR_6"
ERR_ABSENT = "ERR_8"
ERR_LIMITS = "ERR_32"
ERR_NO_SENSOR = "ERR_33"
ERR_LOCAL = "ERR_36"
ERR_RATE = "ERR_38"


def _temperature(value: float) -> str:
    return fixed(value, 2, 3)


def _read_temperature(raw: str) -> float:
    value = parse_decimal(raw, int_digits=4, frac_digits=2)
    if value is None:
        raise Refusal(ERR_SYNTAX)
    return value


def _read_choice(raw: str, allowed: range) -> int:
    value = parse_integer(raw)
    if value is None:
        raise Refusal(ERR_SYNTAX)
    if value not in allowed:
        raise Refusal(ERR_VALUE)
    return value


class Lauda(SimInstrument):
    """A Lauda circulation chiller with a first-order bath."""

    kind = "lauda"
    options_help: ClassVar[dict[str, str]] = {
        "time_constant": "s, lag of the bath towards the set point while running (default 300)",
        "standby_time_constant": "s, lag towards ambient in standby (default 4 x time_constant)",
        "ambient": "°C, room temperature: standby target, floor with cooling off (default 20)",
        "address": "RS-485 address 0..127: commands need the prefix A<nnn>_, replies carry it",
        "setpoint_limit_per_hour": "set point changes allowed per simulated hour, ERR_38 beyond",
        "range": "[low, high] °C, the model's working range (default [-90, 200])",
        "model": "reply to TYPE (default 'RP 890')",
        "external_pt100": "true when an external Pt100 is connected (IN_PV_03, control source 1)",
        "communication_watchdog": "false for a model without OUT_SP_07/08 (default true)",
        "safe_mode": "true when Safe Mode is activated in the menu: a lost link sets IN_SP_07",
    }

    def __init__(
        self,
        clock: SimClock | None = None,
        *,
        time_constant: float = 300.0,
        standby_time_constant: float | None = None,
        ambient: float = 20.0,
        address: int | None = None,
        setpoint_limit_per_hour: int | None = None,
        range: Sequence[float] = (-90.0, 200.0),  # the option's public name shadows range()
        model: str = "RP 890",
        external_pt100: bool = False,
        communication_watchdog: bool = True,
        safe_mode: bool = False,
    ) -> None:
        super().__init__(clock)
        if address is not None and not 0 <= address <= 127:
            raise ValueError(f"Lauda RS-485 address must be 0..127, got {address}")
        if len(range) != 2 or range[0] >= range[1]:
            raise ValueError(f"Lauda range must be [low, high] with low < high, got {range!r}")
        self.time_constant = float(time_constant)
        self.standby_time_constant = float(standby_time_constant or 4 * self.time_constant)
        self.ambient = float(ambient)
        self.address = address
        self.setpoint_limit_per_hour = setpoint_limit_per_hour
        self.low, self.high = float(range[0]), float(range[1])
        self.model = model
        self.external_pt100 = external_pt100
        self._bath = self.ambient
        self._setpoint = min(max(self.ambient, self.low), self.high)
        self._tih, self._til = self.high, self.low
        self._pump = 3
        self._cooling = 2
        self._keylock = 0
        self._source = 0
        self._standby = True
        self._external: float | None = None
        self._changes: deque[float] = deque()
        self.communication_watchdog = communication_watchdog
        self.safe_mode = safe_mode
        self._safe_setpoint = min(max(SAFE_SETPOINT, self.low), self.high)
        self._comm_timeout = 0
        self._last_command = self.clock.now()
        self._comm_alarm = False  # alarm 22, the chiller stopped
        self._safe_mode_on = False  # warning 503, Safe Mode set point in force
        self._reads = self._read_table()
        self._writes: dict[str, Callable[[str], None]] = {
            "OUT_SP_00": self._write_setpoint,
            "OUT_SP_01": self._write_pump,
            "OUT_SP_02": self._write_cooling,
            "OUT_SP_04": self._write_upper_limit,
            "OUT_SP_05": self._write_lower_limit,
            "OUT_MODE_00": self._write_keylock,
            "OUT_MODE_01": self._write_source,
            "OUT_PV_05": self._write_external,
        }
        if communication_watchdog:
            self._writes["OUT_SP_07"] = self._write_safe_setpoint
            self._writes["OUT_SP_08"] = self._write_comm_timeout

    def _read_table(self) -> dict[str, Callable[[], str]]:
        watchdog: dict[str, Callable[[], str]] = {
            "IN_SP_07": lambda: _temperature(self._safe_setpoint),
            "IN_SP_08": lambda: str(self._comm_timeout),
        }
        return {
            **(watchdog if self.communication_watchdog else {}),
            "IN_PV_00": lambda: _temperature(self._bath),
            "IN_PV_01": self._controlled,
            "IN_PV_02": lambda: fixed(0.0 if self._standby else 0.1 * self._pump),
            "IN_PV_03": self._pt100,
            "IN_PV_05": lambda: str(BATH_LEVEL),
            "IN_PV_10": lambda: str(round(self._bath * 1000)),
            "IN_SP_00": lambda: _temperature(self._setpoint),
            "IN_SP_01": lambda: str(self._pump),
            "IN_SP_02": lambda: str(self._cooling),
            "IN_SP_03": lambda: _temperature(self.overtemperature),
            "IN_SP_04": lambda: _temperature(self._tih),
            "IN_SP_05": lambda: _temperature(self._til),
            "IN_MODE_00": lambda: str(self._keylock),
            "IN_MODE_01": lambda: str(self._source),
            "IN_MODE_02": lambda: str(int(self._standby)),
            "TYPE": lambda: self.model,
            "VERSION_R": lambda: VERSION,
            "STATUS": lambda: "-1" if self._stat()[0] == "1" else "0",
            "STAT": self._stat,
        }

    # -- state other simulators and consoles read ---------------------------------------------
    @property
    def temperature(self) -> float:
        """Bath (outflow) temperature, °C."""
        return self._bath

    @property
    def overtemperature(self) -> float:
        """The over-temperature cut-off, fixed 5 K above the model range."""
        return self.high + 5.0

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            self.tick()
            return {
                "bath": self._bath,
                "setpoint": self._setpoint,
                "running": not self._standby,
                "cooling": self._cooling,
                "pump": self._pump,
                "limits": (self._til, self._tih),
                "source": self._source,
                "communication_timeout": self._comm_timeout,
                "communication_alarm": self._comm_alarm,
                "safe_mode_active": self._safe_mode_on,
            }

    # -- physics --------------------------------------------------------------------------------
    def advance(self, dt: float) -> None:
        start = self._last
        deadline = self._last_command + self._comm_timeout
        watching = self._comm_timeout > 0 and not (self._comm_alarm or self._safe_mode_on)
        if watching and start <= deadline < start + dt:
            self._bath_step(deadline - start)
            self._communication_lost()
            dt = start + dt - deadline
        self._bath_step(dt)

    def _communication_lost(self) -> None:
        if self.safe_mode:
            self._safe_mode_on = True
            self._setpoint = min(max(self._safe_setpoint, self._til), self._tih)
        else:
            self._comm_alarm = True
            self._standby = True

    def _bath_step(self, dt: float) -> None:
        if self._standby:
            target, tau = self.ambient, self.standby_time_constant
        else:
            target, tau = self._setpoint, self.time_constant
            if self._cooling == 0:
                target = max(target, self.ambient)
        self._bath = first_order_lag(self._bath, target, dt, tau)

    # -- the command path -----------------------------------------------------------------------
    def respond(self, line: str) -> str | None:
        text = line.strip().replace(" ", "_")
        prefix = "" if self.address is None else f"A{self.address:03d}_"
        if not text.startswith(prefix):
            return None
        self._last_command = self.clock.now()
        try:
            reply = self._dispatch(text[len(prefix) :])
        except Refusal as refusal:
            reply = refusal.reply
        return prefix + reply

    def _dispatch(self, command: str) -> str:
        if len(command) > MAX_COMMAND:
            raise Refusal(ERR_OVERFLOW)
        read = self._reads.get(command)
        if read is not None:
            return read()
        if command in ("START", "STOP"):
            self._refuse_if_local()
            self._standby = command == "STOP"
            return "OK"
        match = _WRITE.fullmatch(command)
        if match is None or match[1] not in self._writes:
            raise Refusal(ERR_COMMAND)
        self._refuse_if_local()
        if match[2] is None:
            raise Refusal(ERR_SYNTAX)
        self._writes[match[1]](match[2])
        return "OK"

    def _refuse_if_local(self) -> None:
        if self.local:
            raise Refusal(ERR_LOCAL)

    # -- reads ----------------------------------------------------------------------------------
    def _controlled(self) -> str:
        if self._source == 3:
            if self._external is None:
                raise Refusal(ERR_ABSENT)
            return _temperature(self._external)
        return _temperature(self._bath)

    def _pt100(self) -> str:
        if not self.external_pt100:
            raise Refusal(ERR_NO_SENSOR)
        return _temperature(self._bath)

    def _stat(self) -> str:
        """Error, alarm, warning, over-temperature, low level, high level, no external value."""
        over = self._bath > self.overtemperature
        no_external = self._source == 3 and self._external is None
        alarm, warning = over or self._comm_alarm, no_external or self._safe_mode_on
        flags = (over, alarm, warning, over, False, False, no_external)
        return "".join("1" if flag else "0" for flag in flags)

    # -- writes ---------------------------------------------------------------------------------
    def _write_setpoint(self, raw: str) -> None:
        value = _read_temperature(raw)
        if not self._til <= value <= self._tih:
            raise Refusal(ERR_VALUE)
        self._count_setpoint_change()
        self._setpoint = value

    def _count_setpoint_change(self) -> None:
        limit = self.setpoint_limit_per_hour
        if limit is None:
            return
        now = self.clock.now()
        while self._changes and self._changes[0] <= now - HOUR:
            self._changes.popleft()
        if len(self._changes) >= limit:
            raise Refusal(ERR_RATE)
        self._changes.append(now)

    def _write_limit(self, raw: str) -> float:
        value = _read_temperature(raw)
        if not self.low <= value <= self.high:
            raise Refusal(ERR_VALUE)
        return value

    def _write_upper_limit(self, raw: str) -> None:
        value = self._write_limit(raw)
        if value <= self._til:
            raise Refusal(ERR_LIMITS)
        self._tih = value
        self._setpoint = min(self._setpoint, value)

    def _write_lower_limit(self, raw: str) -> None:
        value = self._write_limit(raw)
        if value >= self._tih:
            raise Refusal(ERR_LIMITS)
        self._til = value
        self._setpoint = max(self._setpoint, value)

    def _write_pump(self, raw: str) -> None:
        self._pump = _read_choice(raw, PUMP_LEVELS)

    def _write_cooling(self, raw: str) -> None:
        self._cooling = _read_choice(raw, range(3))

    def _write_keylock(self, raw: str) -> None:
        self._keylock = _read_choice(raw, range(2))

    def _write_source(self, raw: str) -> None:
        source = _read_choice(raw, range(4))
        if source == 2 or (source == 1 and not self.external_pt100):
            raise Refusal(ERR_NO_SENSOR)
        self._source = source

    def _write_safe_setpoint(self, raw: str) -> None:
        value = _read_temperature(raw)
        if not self._til <= value <= self._tih:
            raise Refusal(ERR_VALUE)
        self._safe_setpoint = value

    def _write_comm_timeout(self, raw: str) -> None:
        self._comm_timeout = _read_choice(raw, COMM_TIMEOUTS)
        self._comm_alarm = self._safe_mode_on = False

    def _write_external(self, raw: str) -> None:
        self._external = _read_temperature(raw)
