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

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from teststand.sim.caen_channel import KNOWN, READERS, WRITABLE, Channel, per_channel, polarities
from teststand.sim.caen_wire import ADDRESS, DIGITS, Command, Refusal, parse, split_fields
from teststand.sim.clock import SimClock
from teststand.sim.instrument import SimInstrument
from teststand.sim.physics import SensorModel

_RAMP_DOWN_NAMES = ("RDW", "RDWN")


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
        signs = polarities(polarity, n)
        breakdowns = per_channel(breakdown, n, "breakdown")
        leakages = per_channel(leakage, n, "leakage")
        self._channels = [
            Channel(
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
        raise Refusal("PAR")

    # -- protocol --------------------------------------------------------------------------
    def respond(self, line: str) -> str | None:
        try:
            fields = self._address(split_fields(line))
            if fields is None:
                return None
            value = self._execute(parse(fields))
        except Refusal as refusal:
            return self._reply(f"{refusal.code}:ERR")
        return self._reply("CMD:OK" if value is None else f"CMD:OK,VAL:{value}")

    def _execute(self, command: Command) -> str | None:
        parameter = command.parameter
        if parameter is None:
            raise Refusal("PAR")
        if parameter in self._board_parameters():
            return self._board_command(command.verb, parameter, command.value)
        targets = self._targets(command.channel)
        name = self._canonical(parameter)
        if command.verb == "INFO":
            if len(targets) != 1:
                raise Refusal("CH")
            return targets[0].info(name)
        if command.verb == "MON":
            return ";".join(self._read(channel, name) for channel in targets)
        self._write(targets, name, command.value)
        return None

    def channel_voltage(self, number: int) -> float:
        """|VMON| of channel `number` at the present simulated time (a coupled sensor's bias)."""
        with self.lock:
            self.tick()
            return abs(self._channels[number].vmon)

    def _targets(self, channel: str | None) -> list[Channel]:
        if channel is None or not DIGITS.fullmatch(channel) or int(channel) > self.channels:
            raise Refusal("CH")
        number = int(channel)
        return list(self._channels) if number == self.channels else [self._channels[number]]

    def _canonical(self, parameter: str) -> str:
        if parameter in _RAMP_DOWN_NAMES:
            if parameter != self.rdw_name:
                raise Refusal("PAR")
            return "RDW"
        if parameter not in KNOWN:
            raise Refusal("PAR")
        return parameter

    def _read(self, channel: Channel, name: str) -> str:
        if name == "STAT":
            return f"{self._status(channel):05d}"
        if name not in READERS:
            raise Refusal("PAR")
        return READERS[name](channel)

    def _write(self, targets: list[Channel], name: str, raw: str | None) -> None:
        if name not in WRITABLE:
            raise Refusal("PAR")
        if self.local:
            raise Refusal("LOC")
        values = [channel.check(name, raw) for channel in targets]
        for channel, value in zip(targets, values, strict=True):
            channel.apply(name, value)

    def stick(self, channel: int, stuck: bool = True) -> None:
        """Fault injection: channel `channel`'s output stage fails (or is repaired): its VMON
        stays where it is now, whatever VSET, OFF or a trip say."""
        with self.lock:
            self.tick()
            self._channels[channel].stuck = stuck

    def trip(self, channel: int) -> None:
        """Fault injection: channel `channel` trips now, as after TRIP s in OVC (off as PDWN
        says, TRIP set until ON)."""
        with self.lock:
            self.tick()
            self._channels[channel].trip_off()

    def _status(self, channel: Channel) -> int:
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
        if key != "BD" or not ADDRESS.fullmatch(value):
            raise Refusal("CMD")
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
            raise Refusal("PAR")
        if self.local:
            raise Refusal("LOC")
        choices = _BOARD_WRITE[parameter]
        if choices is None:
            if raw is not None:
                raise Refusal("VAL")
            for channel in self._channels:
                channel.clear_alarm()
        elif raw in choices:
            self.interlock_mode = raw
        else:
            raise Refusal("VAL")
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
            raise Refusal("PAR")
        return values[parameter]

    def _alarm(self) -> int:
        return sum(1 << k for k, channel in enumerate(self._channels) if channel.tripped)
