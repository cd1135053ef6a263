"""CAEN high-voltage supplies: DT8033 (803x dialect) and N1470 (14xx dialect, board-addressed).

Both speak `$[BD:xx,]CMD:MON|SET|INFO,CH:n,PAR:p[,VAL:v]` (see PROTOCOLS.md, "CAEN high-voltage
supplies"); one implementation, `CaenHV`, serves both and the two classes fill in the dialect
hooks (reply prefix, addressing, channel count, status bit order, board parameters).

Choices the manuals leave open, made here:

- Fields are checked left to right: format (`CMD:ERR`: no `$`, a field without `:`, unknown,
  repeated or misordered keys, unknown verb, VAL with MON/INFO), then board address (14xx),
  then PAR (missing: `PAR:ERR`), then CH (missing, non-numeric, above the all-channels number:
  `CH:ERR`), then PAR name and access (`PAR:ERR`), then LOCAL (`LOC:ERR`, SET only), then VAL.
  A missing CH or PAR field is `CH:ERR` / `PAR:ERR`, as the 14xx manual words these errors
  ("field not present or wrong").
- VAL is a plain decimal (no exponent, no nan/inf), rounded to the parameter's resolution, then
  range-checked: `VAL:ERR` when missing for a valued SET, non-numeric, out of range, or given to
  ON/OFF/BDCLR. A group SET (`CH:8` / `CH:4`) is all-or-nothing.
- Hardware maxima: DT8033 4000 V / 3000 µA, N1470 8000 V / 3000 µA. VSET range 0..min(MAXV, hw).
  ISET 0..3000 µA, MAXV 0..hw (whole volts), RUP/RDW 1..500 V/s (whole), TRIP 0..1000 s (0.1 s).
- Reply formats: VSET/VMIN/VMON `0123.4`, VMAX `4000.0`, VDEC `1`, ISET `0100.00`,
  IMON `0001.23` (HIGH) or `0001.234` (LOW), MAXV `4000`, RUP/RDW `010`, TRIP `0010.0`,
  PDWN `RAMP|KILL`, IMRANGE `HIGH|LOW`, POL `+|-`, STAT `00005` (decimal). Group reads join the
  channels' values with `;`.
- IMRANGE LOW has full scale hw max / 10 (300 µA); IMON saturates there.
- Polarity: voltages are magnitudes. A negative channel takes VSET as a positive magnitude (a
  negative VAL is `VAL:ERR`) and reports VMON as a magnitude; POL says `-`. POL is read only:
  SET gives `PAR:ERR`, like every read-only parameter (VMIN, VMAX, VDEC, VMON, IMON, POL, STAT).
  ON/OFF/BDCLR are SET only: MON gives `PAR:ERR`.
- The ramp-down parameter is called `RDW` or `RDWN` (option `rdw_name`); the other name, and
  `RAMPDOWN`, are `PAR:ERR` for every verb.
- OVC: when the load would draw ISET or more, the supply acts as a current source: VMON is held
  where the sensor draws ISET (RUP is then not set; UNV is, when VMON < VSET - 2.5 V). TRIP follows
  the CAEN convention (SY2527 manual): 0 trips as soon as OVC is seen, 1000 means infinite
  (constant-current mode, never trips), in between the channel trips after TRIP s continuously in
  OVC. The trip counter restarts on ON, on setting TRIP, on BDCLR and when OVC ends. A trip
  switches the channel off as PDWN says and sets TRIP until ON (or BDCLR on the N1470).
- MAXV below VSET limits the output to MAXV (14xx sets its MAXV status bit). OVV/UNV are set only
  while ON and not ramping, with a 2.5 V band around min(VSET, MAXV). Other bits stay 0.
- INFO answers `type;access;min;max;dec;res;exp;unit;on;off`: type NUM, ENUM, STAT, STR or CMD;
  access R, W or RW; `exp` is the unit's power of ten (ISET: `-6` with unit `A`, i.e. µA);
  `on`/`off` are the two names of an ENUM (PDWN `KILL`/`RAMP`); empty where they do not apply.
  INFO takes one channel: the all-channels number is `CH:ERR`.
- Board parameters exist on the N1470 only (on the DT8033 they are `PAR:ERR`); CH is ignored for
  them. BDNAME `N1470`, BDNCH `4`, BDFREL `1.05`, BDSNUM `00147`, BDILK `NO`, BDILKM
  `OPEN|CLOSED` (settable), BDCTR `LOCAL|REMOTE` (follows the LOCAL fault), BDTERM `ON`,
  BDALARM decimal `00000` (bit n: channel n tripped). SET BDCLR clears trips and alarms.
- 14xx addressing: BD is one or two digits; another board's number gets no reply at all; a line
  without a leading numeric BD field gets `#BD:<own>,CMD:ERR`. CH accepts leading zeros (`CH:00`).
- Defaults: VSET 0 V, ISET 100 µA, MAXV hw max, RUP/RDW 10 V/s, TRIP 10 s, PDWN RAMP, IMRANGE
  HIGH, all channels OFF at 0 V.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from teststand.sim.clock import SimClock
from teststand.sim.instrument import SimInstrument
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

_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_ADDRESS = re.compile(r"[0-9]{1,2}")
_DIGITS = re.compile(r"[0-9]{1,3}")
_KEY_ORDER = ("CMD", "CH", "PAR", "VAL")
_VERBS = ("MON", "SET", "INFO")
_RAMP_DOWN_NAMES = ("RDW", "RDWN")

#: Settable numeric channel parameters and their decimals (resolution).
_DECIMALS = {"VSET": 1, "ISET": 2, "MAXV": 0, "RUP": 0, "RDW": 0, "TRIP": 1}
#: Settable enumerated channel parameters and their values.
_CHOICES = {"PDWN": ("RAMP", "KILL"), "IMRANGE": ("HIGH", "LOW")}
#: SET-only channel commands without a value.
_ACTIONS = ("ON", "OFF")


class _Refusal(Exception):
    """A command the unit answers with `<code>:ERR`."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class _Command:
    verb: str
    channel: str | None
    parameter: str | None
    value: str | None


def _volts(value: float) -> str:
    return f"{value:06.1f}"


def _number(value: float) -> str:
    return f"{value:g}"


class _Channel:
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

    # -- physics ---------------------------------------------------------------------------
    def target(self) -> float:
        return min(self.vset, self.maxv) if self.on else 0.0

    def advance(self, dt: float, temperature: float) -> None:
        """Advance by `dt` s in steps of at most MAX_STEP; settled states are skipped over."""
        self.temperature = temperature
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
        if self.pdwn == "KILL":
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
        """The value `raw` stands for, or `_Refusal("VAL")`."""
        if parameter in _ACTIONS:
            if raw is not None:
                raise _Refusal("VAL")
            return None
        if raw is None:
            raise _Refusal("VAL")
        if parameter in _CHOICES:
            if raw not in _CHOICES[parameter]:
                raise _Refusal("VAL")
            return raw
        if not _NUMBER.fullmatch(raw):
            raise _Refusal("VAL")
        value = round(float(raw), _DECIMALS[parameter])
        low, high = self.limits(parameter)
        if not low <= value <= high:
            raise _Refusal("VAL")
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
_READERS: dict[str, Callable[[_Channel], str]] = {
    "VSET": lambda c: _volts(c.vset),
    "VMIN": lambda c: _volts(0.0),
    "VMAX": lambda c: _volts(c.v_max),
    "VDEC": lambda c: "1",
    "VMON": lambda c: _volts(c.vmon),
    "ISET": lambda c: f"{c.iset:07.2f}",
    "IMON": _Channel.imon_text,
    "IMRANGE": lambda c: c.imrange,
    "MAXV": lambda c: f"{c.maxv:04.0f}",
    "RUP": lambda c: f"{c.rup:03.0f}",
    "RDW": lambda c: f"{c.rdw:03.0f}",
    "TRIP": lambda c: f"{c.trip:06.1f}",
    "PDWN": lambda c: c.pdwn,
    "POL": lambda c: c.polarity,
}
_WRITABLE = frozenset(_DECIMALS) | frozenset(_CHOICES) | frozenset(_ACTIONS)
_KNOWN = frozenset(_READERS) | _WRITABLE | {"STAT"}


def _per_channel(value: float | Sequence[float], count: int, name: str) -> list[float]:
    values = [float(value)] * count if isinstance(value, int | float) else [*map(float, value)]
    if len(values) != count:
        raise ValueError(f"{name}: expected one value or {count}, got {len(values)}")
    return values


def _polarities(polarity: str | Sequence[str], count: int) -> list[str]:
    signs = list(polarity)
    if len(signs) == 1:
        signs *= count
    if len(signs) != count or any(sign not in ("+", "-") for sign in signs):
        raise ValueError(f"polarity: expected '+' or '-', once or {count} times, got {polarity!r}")
    return signs


def _split_fields(line: str) -> list[tuple[str, str]]:
    """`$K:V,K:V,...` as (key, value) pairs, or `_Refusal("CMD")`."""
    text = line.strip()
    if not text.startswith("$"):
        raise _Refusal("CMD")
    fields = []
    for item in text[1:].split(","):
        key, colon, value = item.partition(":")
        if not colon:
            raise _Refusal("CMD")
        fields.append((key, value))
    return fields


def _parse(fields: list[tuple[str, str]]) -> _Command:
    """The command in `CMD[,CH][,PAR][,VAL]` fields (in that order), or `_Refusal("CMD")`."""
    keys = [key for key, _ in fields]
    if not keys or keys[0] != "CMD" or any(key not in _KEY_ORDER for key in keys):
        raise _Refusal("CMD")
    positions = [_KEY_ORDER.index(key) for key in keys]
    if positions != sorted(set(positions)):
        raise _Refusal("CMD")
    values = dict(fields)
    verb = values["CMD"]
    if verb not in _VERBS or ("VAL" in values and verb != "SET"):
        raise _Refusal("CMD")
    return _Command(verb, values.get("CH"), values.get("PAR"), values.get("VAL"))


class CaenHV(SimInstrument):
    """A CAEN HV supply, dialect-neutral; subclasses set the class constants and hooks."""

    #: Channels; the number `channels` itself addresses all of them.
    channels: ClassVar[int]
    #: Hardware maxima: V and µA.
    v_max: ClassVar[float]
    i_max: ClassVar[float]
    #: Status condition name -> bit number, in this family's order.
    status_bits: ClassVar[dict[str, int]]
    options_help: ClassVar[dict[str, str]] = {
        "rdw_name": "name of the ramp-down parameter: RDW (default) or RDWN",
        "polarity": "'+' or '-' for all channels, or one sign per channel (e.g. '++--')",
        "breakdown": "sensor breakdown voltage in V, one for all channels or a list",
        "leakage": "sensor leakage current at full depletion and 20 °C in A, one or a list",
        "depletion": "sensor full-depletion voltage in V",
        "temperature": "module temperature in °C (a number, or a callable in-process)",
    }

    def __init__(
        self,
        clock: SimClock | None = None,
        *,
        rdw_name: str = "RDW",
        polarity: str | Sequence[str] = "+",
        breakdown: float | Sequence[float] = 400.0,
        leakage: float | Sequence[float] = 1e-6,
        depletion: float = 50.0,
        temperature: Callable[[], float] | float = 20.0,
    ) -> None:
        super().__init__(clock)
        if rdw_name not in _RAMP_DOWN_NAMES:
            raise ValueError(f"rdw_name: expected RDW or RDWN, got {rdw_name!r}")
        self.rdw_name = rdw_name
        self._temperature = temperature if callable(temperature) else _constant(temperature)
        n = self.channels
        signs = _polarities(polarity, n)
        breakdowns = _per_channel(breakdown, n, "breakdown")
        leakages = _per_channel(leakage, n, "leakage")
        self._channels = [
            _Channel(
                signs[k],
                SensorModel(leakages[k], float(depletion), breakdowns[k]),
                self.v_max,
                self.i_max,
            )
            for k in range(n)
        ]
        self.temperature = float(self._temperature())
        for channel in self._channels:
            channel.temperature = self.temperature

    # -- dialect hooks ---------------------------------------------------------------------
    def _address(self, fields: list[tuple[str, str]]) -> list[tuple[str, str]] | None:
        """The fields after the address, or None when the command is for another unit."""
        return fields

    def _reply(self, body: str) -> str:
        return "#" + body

    def _board_parameters(self) -> frozenset[str]:
        return frozenset()

    def _board_command(self, verb: str, parameter: str, raw: str | None) -> str | None:
        raise _Refusal("PAR")

    # -- protocol --------------------------------------------------------------------------
    def respond(self, line: str) -> str | None:
        try:
            fields = self._address(_split_fields(line))
            if fields is None:
                return None
            value = self._execute(_parse(fields))
        except _Refusal as refusal:
            return self._reply(f"{refusal.code}:ERR")
        return self._reply("CMD:OK" if value is None else f"CMD:OK,VAL:{value}")

    def _execute(self, command: _Command) -> str | None:
        parameter = command.parameter
        if parameter is None:
            raise _Refusal("PAR")
        if parameter in self._board_parameters():
            return self._board_command(command.verb, parameter, command.value)
        targets = self._targets(command.channel)
        name = self._canonical(parameter)
        if command.verb == "INFO":
            if len(targets) != 1:
                raise _Refusal("CH")
            return targets[0].info(name)
        if command.verb == "MON":
            return ";".join(self._read(channel, name) for channel in targets)
        self._write(targets, name, command.value)
        return None

    def _targets(self, channel: str | None) -> list[_Channel]:
        if channel is None or not _DIGITS.fullmatch(channel) or int(channel) > self.channels:
            raise _Refusal("CH")
        number = int(channel)
        return list(self._channels) if number == self.channels else [self._channels[number]]

    def _canonical(self, parameter: str) -> str:
        if parameter in _RAMP_DOWN_NAMES:
            if parameter != self.rdw_name:
                raise _Refusal("PAR")
            return "RDW"
        if parameter not in _KNOWN:
            raise _Refusal("PAR")
        return parameter

    def _read(self, channel: _Channel, name: str) -> str:
        if name == "STAT":
            return f"{self._status(channel):05d}"
        if name not in _READERS:
            raise _Refusal("PAR")
        return _READERS[name](channel)

    def _write(self, targets: list[_Channel], name: str, raw: str | None) -> None:
        if name not in _WRITABLE:
            raise _Refusal("PAR")
        if self.local:
            raise _Refusal("LOC")
        values = [channel.check(name, raw) for channel in targets]
        for channel, value in zip(targets, values, strict=True):
            channel.apply(name, value)

    def _status(self, channel: _Channel) -> int:
        bits = self.status_bits
        return sum(1 << bits[flag] for flag in channel.flags() if flag in bits)

    # -- physics and consoles --------------------------------------------------------------
    def advance(self, dt: float) -> None:
        self.temperature = float(self._temperature())
        for channel in self._channels:
            channel.advance(dt, self.temperature)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            self.tick()
            return {
                "temperature": self.temperature,
                "local": self.local,
                "channels": [
                    {
                        "channel": index,
                        "polarity": channel.polarity,
                        "on": channel.on,
                        "vset": channel.vset,
                        "vmon": round(channel.vmon, 3),
                        "imon_ua": round(channel.current_ua(), 4),
                        "status": self._status(channel),
                        "flags": channel.flags(),
                    }
                    for index, channel in enumerate(self._channels)
                ],
            }


def _constant(value: float) -> Callable[[], float]:
    def read() -> float:
        return float(value)

    return read


class CaenDT8033(CaenHV):
    """DT8033: 8 channels, 4 kV / 3 mA, 803x dialect (no board field, `CH:8` = all)."""

    kind = "caen-dt8033"
    channels = 8
    v_max = 4000.0
    i_max = 3000.0
    status_bits: ClassVar[dict[str, int]] = {
        "ON": 0, "RUP": 1, "RDW": 2, "OVC": 3, "OVV": 4, "UNV": 5, "TRIP": 6,
    }  # fmt: skip


#: N1470 settable board parameters and their values (None: a command without value).
_BOARD_WRITE: dict[str, tuple[str, ...] | None] = {"BDILKM": ("OPEN", "CLOSED"), "BDCLR": None}
_BOARD_INFO = {
    "BDNAME": "STR;R;;;;;;;;",
    "BDNCH": "NUM;R;0;4;0;1;0;;;",
    "BDFREL": "STR;R;;;;;;;;",
    "BDSNUM": "NUM;R;0;65535;0;1;0;;;",
    "BDILK": "ENUM;R;;;;;;;YES;NO",
    "BDILKM": "ENUM;RW;;;;;;;OPEN;CLOSED",
    "BDCTR": "ENUM;R;;;;;;;LOCAL;REMOTE",
    "BDTERM": "ENUM;R;;;;;;;ON;OFF",
    "BDALARM": "STAT;R;0;127;0;1;0;;;",
    "BDCLR": "CMD;W;;;;;;;;",
}


class CaenN1470(CaenHV):
    """N1470: 4 channels, 8 kV / 3 mA, 14xx dialect (`$BD:xx,` addressing, `CH:4` = all)."""

    kind = "caen-n1470"
    channels = 4
    v_max = 8000.0
    i_max = 3000.0
    status_bits: ClassVar[dict[str, int]] = {
        "ON": 0, "RUP": 1, "RDW": 2, "OVC": 3, "OVV": 4, "UNV": 5, "MAXV": 6, "TRIP": 7,
    }  # fmt: skip
    options_help: ClassVar[dict[str, str]] = {
        "board": "RS-485 board address 0..31 (commands for other boards get no reply)",
        **CaenHV.options_help,
    }
    name = "N1470"
    firmware = "1.05"
    serial_number = 147

    def __init__(self, clock: SimClock | None = None, *, board: int = 0, **options: Any) -> None:
        if not isinstance(board, int) or not 0 <= board <= 31:
            raise ValueError(f"board: expected an address 0..31, got {board!r}")
        super().__init__(clock, **options)
        self.board = board
        self.interlock_mode = "OPEN"

    def _address(self, fields: list[tuple[str, str]]) -> list[tuple[str, str]] | None:
        key, value = fields[0]
        if key != "BD" or not _ADDRESS.fullmatch(value):
            raise _Refusal("CMD")
        return fields[1:] if int(value) == self.board else None

    def _reply(self, body: str) -> str:
        return f"#BD:{self.board:02d},{body}"

    def _board_parameters(self) -> frozenset[str]:
        return frozenset(_BOARD_INFO)

    def _board_command(self, verb: str, parameter: str, raw: str | None) -> str | None:
        if verb == "INFO":
            return _BOARD_INFO[parameter]
        if verb == "MON":
            return self._board_value(parameter)
        if parameter not in _BOARD_WRITE:
            raise _Refusal("PAR")
        if self.local:
            raise _Refusal("LOC")
        choices = _BOARD_WRITE[parameter]
        if choices is None:
            if raw is not None:
                raise _Refusal("VAL")
            for channel in self._channels:
                channel.clear_alarm()
        elif raw in choices:
            self.interlock_mode = raw
        else:
            raise _Refusal("VAL")
        return None

    def _board_value(self, parameter: str) -> str:
        values = {
            "BDNAME": self.name,
            "BDNCH": str(self.channels),
            "BDFREL": self.firmware,
            "BDSNUM": f"{self.serial_number:05d}",
            "BDILK": "NO",
            "BDILKM": self.interlock_mode,
            "BDCTR": "LOCAL" if self.local else "REMOTE",
            "BDTERM": "ON",
            "BDALARM": f"{self._alarm():05d}",
        }
        if parameter not in values:
            raise _Refusal("PAR")
        return values[parameter]

    def _alarm(self) -> int:
        return sum(1 << k for k, channel in enumerate(self._channels) if channel.tripped)
