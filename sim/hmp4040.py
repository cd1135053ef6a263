"""Rohde & Schwarz HMP4040 (HMP2030, HMP2020) low-voltage supply, SCPI over a line link.

Every channel drives a resistive load (option `loads`, Ω). A channel delivers only when it is
armed (`OUTP:SEL 1`) and the master switch is on (`OUTP:GEN 1`). It regulates its set voltage
unless V/R exceeds the current limit; then it is in constant-current mode at V = I_limit·R.

Commands (HMP series SCPI programmer's manual): `INST[:SEL] OUTn`, `INST:NSEL n`,
`[SOUR:]VOLT|CURR[:LEV][:IMM][:AMPL] <n>|MIN|MAX|UP|DOWN`, `VOLT|CURR[:LEV]:STEP[:INCR]`,
`APPL <V>,<I>`, `OUTP[:STAT]`, `OUTP:SEL`, `OUTP:GEN`, `MEAS[:SCAL][:VOLT][:DC]?`,
`MEAS[:SCAL]:CURR[:DC]?`, `VOLT:PROT[:LEV]`, `VOLT:PROT:TRIP?`, `VOLT:PROT:CLE`,
`VOLT:PROT:MODE MEAS|PROT`, `FUSE[:STAT]`, `FUSE:DEL`, `FUSE:LINK n`, `FUSE:LINK? n`,
`FUSE:UNL n`, `FUSE:TRIP?`, `ARB:DATA`, `ARB:REP`, `ARB:TRAN n`, `ARB:STAR n`, `ARB:STOP n`,
`ARB:CLE n`, `ARB:SAVE m`, `ARB:REST m`, `SYST:BEEP`, `SYST:MIX`, `*SAV m`, `*RCL m` (m 0–9;
`*RCL` of a slot never saved is -221), and the
common commands, `SYST:ERR?`, `SYST:VERS?`, `SYST:LOC|REM|RWL` of `scpi.py`. Other headers are
-113 "Undefined header".

Choices (see also PROTOCOLS.md):

- Channel commands act on the channel picked by `INST:NSEL n` or `INST OUTn` (also `OUTPn`,
  `OUTPUTn`); `INST?` answers `OUTP1`..., `INST:NSEL?` the number. A channel number beyond the
  unit's count is -222, an `INST` name that is not a channel -224.
- Ranges: voltage 0–32 V, current limit 0–10 A, over-voltage protection 0–33 V, steps 0–32 V and
  0–10 A (default 1 V and 0.1 A, per channel), fuse delay 0–250 ms (the power limit of 160 W per
  channel and the HMP2030's 5 A are not modelled). Out of range → -222, also for `UP`/`DOWN`
  steps that would leave the range. `MIN`/`MAX`/`DEF` are accepted for each, also in queries.
  *RST: 0 V, 0.1 A, OVP 33 V (MEAS mode), fuses off and unlinked, every channel disarmed, master
  off, channel 1 selected, waveforms stopped (the waveform editor and memories are kept).
- `OUTP ON` arms the selected channel and turns the master on; `OUTP OFF` disarms the selected
  channel only. `OUTP?` answers 1 when the selected channel delivers (armed and master on).
- OVP: when a delivering channel's output voltage (MEAS mode) or set voltage (PROT mode) exceeds
  the level, the channel is disarmed and `VOLT:PROT:TRIP?` answers 1 until `VOLT:PROT:CLE`.
- Electronic fuse: a channel with its fuse on that stays in constant-current mode for the fuse
  delay (checked before and after every command, in simulated time) is disarmed, and so is
  every channel it is linked to (`FUSE:LINK n` on the selected channel: channel n follows it;
  a link to itself is ignored); `FUSE:TRIP?` answers 1 until the channel is armed again.
- Arbitrary waveform: `ARB:DATA v1,i1,t1,...` (1–128 points; 0–32 V, 0–10 A, 0.06–10 s dwell)
  and `ARB:REP` (0–255, 0 = forever) fill the editor; `ARB:TRAN n` copies it to channel n (an
  empty editor is -221), `ARB:STAR n` plays channel n's waveform from now in simulated time
  (none transferred: -221) in place of its VOLT/CURR settings, `ARB:STOP n` stops it, `ARB:CLE n`
  removes it. `ARB:SAVE m` / `ARB:REST m` (m 1–3) store the editor and load it back.
- Replies: `VOLT?`, `MEAS:VOLT?`, `VOLT:PROT?`, `VOLT:STEP?` with 3 decimals (`12.000`); `CURR?`,
  `MEAS:CURR?`, `CURR:STEP?` with 4 (`1.2345`); `APPL?` as `12.000,1.0000`; `FUSE:DEL?` and
  `ARB:REP?` whole numbers; switches as 1/0. Readings are exact (no noise). A channel that does
  not deliver measures 0.
- Errors, LOCAL refusal (-221) and line syntax: see `scpi.py`.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, ClassVar

from teststand.sim.clock import SimClock
from teststand.sim.hmp4040_arb import WaveformEditor
from teststand.sim.hmp4040_channel import (
    CURRENT,
    CURRENT_STEP,
    FUSE_DELAY,
    PROTECTION,
    VOLTAGE,
    VOLTAGE_STEP,
    Channel,
)
from teststand.sim.scpi import (
    DATA_OUT_OF_RANGE,
    ILLEGAL_PARAMETER_VALUE,
    SETTINGS_CONFLICT,
    Call,
    Command,
    Field,
    Limits,
    ScpiError,
    ScpiInstrument,
    action,
    choice_setting,
    flag_setting,
    mnemonic_matches,
    number_setting,
    reader,
    to_bool,
    to_number,
)

MODELS = {2: "HMP2020", 3: "HMP2030", 4: "HMP4040"}
FIRMWARE = "HW50020001/SW2.51"
SETUP_SLOTS = Limits(0, 9, 0)
_CHANNEL_NAME = re.compile(r"OUT(?:P|PUT)?([0-9]+)", re.IGNORECASE)


def volts_text(value: float) -> str:
    return f"{value + 0.0:.3f}"


def amps_text(value: float) -> str:
    return f"{value + 0.0:.4f}"


def whole_text(value: float) -> str:
    return str(round(value))


class HMP4040(ScpiInstrument):
    """An HMP4040 (4 channels) or, with `channels=3`/`2`, an HMP2030/HMP2020."""

    kind = "hmp4040"
    reply_terminator: ClassVar[bytes] = b"\n"
    options_help: ClassVar[dict[str, str]] = {
        "channels": "number of channels: 4 (HMP4040, default), 3 (HMP2030) or 2 (HMP2020)",
        "loads": "load resistance per channel, Ω (default 2.0 each)",
        "serial": "serial number in *IDN? (default 101234)",
    }

    def __init__(
        self,
        clock: SimClock | None = None,
        channels: int = 4,
        loads: list[float] | None = None,
        serial: str = "101234",
    ) -> None:
        if channels not in MODELS:
            raise ValueError(f"channels must be one of {sorted(MODELS)}, got {channels}")
        self.loads = [2.0] * channels if loads is None else [float(r) for r in loads]
        if len(self.loads) != channels or min(self.loads) <= 0:
            raise ValueError(f"loads must be {channels} resistances > 0 Ω, got {loads}")
        super().__init__(clock)
        self.model = MODELS[channels]
        self.serial = serial
        self.channels = [Channel(load) for load in self.loads]
        self.selected = 0
        self.master = False
        self.waveforms = WaveformEditor(self._arb_channel, self.clock.now)
        self.setups: dict[int, list[Channel]] = {}  # *SAV

    # -- ScpiInstrument ----------------------------------------------------------------------
    def identity(self) -> str:
        return f"ROHDE&SCHWARZ,{self.model},{self.serial},{FIRMWARE}"

    def reset(self) -> None:
        self.channels = [Channel(load) for load in self.loads]
        self.selected = 0
        self.master = False

    def advance(self, dt: float) -> None:
        """Time passes: channels in constant-current mode count it towards their fuse delay; then
        the protections act."""
        now = self.clock.now()
        for channel in self.channels:
            if channel.limited(self._delivers(channel), now):
                channel.limited_for += dt
        self.settle()

    def settle(self) -> None:
        """Protections after each command: OVP, then fuses (with the channels linked to them)."""
        now = self.clock.now()
        for channel in self.channels:
            if channel.over_voltage(self._delivers(channel), now):
                channel.armed = False
                channel.tripped = True
        for channel in self.channels:
            if channel.fuse_blows(channel.limited(self._delivers(channel), now)):
                channel.fuse_tripped = True
                for number in {self.channels.index(channel) + 1, *channel.fuse_links}:
                    self.channels[number - 1].armed = False

    def commands(self) -> list[Command]:
        source = "[:SOURce]"
        return [
            Command(":INSTrument[:SELect]", self._select_by_name, reader(self._selected_name)),
            number_setting(
                ":INSTrument:NSELect",
                lambda: self.selected + 1,
                lambda n: setattr(self, "selected", int(n) - 1),
                self._channel_numbers(),
                whole_text,
            ),
            self._stepped(f"{source}:VOLTage", "voltage", VOLTAGE, volts_text),
            self._number(
                f"{source}:VOLTage[:LEVel]:STEP[:INCRement]",
                "voltage_step",
                VOLTAGE_STEP,
                volts_text,
            ),
            self._stepped(f"{source}:CURRent", "current", CURRENT, amps_text),
            self._number(
                f"{source}:CURRent[:LEVel]:STEP[:INCRement]",
                "current_step",
                CURRENT_STEP,
                amps_text,
            ),
            self._number(
                f"{source}:VOLTage:PROTection[:LEVel]", "protection", PROTECTION, volts_text
            ),
            Command(
                f"{source}:VOLTage:PROTection:TRIPped",
                read=reader(lambda: "1" if self.channel.tripped else "0"),
            ),
            Command(
                f"{source}:VOLTage:PROTection:CLEar",
                action(lambda: setattr(self.channel, "tripped", False)),
            ),
            self._choice(
                f"{source}:VOLTage:PROTection:MODE", "protection_mode", ("MEASured", "PROTected")
            ),
            Command(":APPLy", self._apply, reader(self._applied)),
            flag_setting(
                ":OUTPut:SELect", lambda: self.channel.armed, lambda on: self.channel.arm(on)
            ),
            flag_setting(
                ":OUTPut:GENeral", lambda: self.master, lambda on: setattr(self, "master", on)
            ),
            Command(":OUTPut[:STATe]", self._output, reader(self._output_state)),
            Command(
                ":MEASure[:SCALar][:VOLTage][:DC]",
                read=reader(lambda: volts_text(self._measure()[0])),
            ),
            Command(
                ":MEASure[:SCALar]:CURRent[:DC]", read=reader(lambda: amps_text(self._measure()[1]))
            ),
            flag_setting(
                ":FUSE[:STATe]",
                lambda: self.channel.fuse,
                lambda on: setattr(self.channel, "fuse", on),
            ),
            self._number(":FUSE:DELay", "fuse_delay", FUSE_DELAY, whole_text),
            Command(":FUSE:LINK", self._link, self._linked),
            Command(
                ":FUSE:UNLink",
                lambda call: self.channel.fuse_links.discard(self._channel_arg(call)),
            ),
            Command(":FUSE:TRIPed", read=reader(lambda: "1" if self.channel.fuse_tripped else "0")),
            *self.waveforms.commands(),
            Command(":SYSTem:BEEPer[:IMMediate]", action(lambda: None), setting=False),
            Command(":SYSTem:MIX", action(lambda: setattr(self, "remote", True)), setting=False),
            Command("*SAV", lambda call: self._save_setup(to_number(call.arg(), SETUP_SLOTS))),
            Command("*RCL", lambda call: self._recall_setup(to_number(call.arg(), SETUP_SLOTS))),
        ]

    def snapshot(self) -> dict[str, Any]:
        now = self.clock.now()
        return {
            "model": self.model,
            "selected": self.selected + 1,
            "master": self.master,
            "channels": [
                {
                    **asdict(ch),
                    "fuse_links": sorted(ch.fuse_links),
                    "output": ch.output(self._delivers(ch), now),
                }
                for ch in self.channels
            ],
        }

    # -- channels ----------------------------------------------------------------------------
    @property
    def channel(self) -> Channel:
        """The selected channel."""
        return self.channels[self.selected]

    def _delivers(self, channel: Channel) -> bool:
        return channel.armed and self.master

    def _measure(self) -> tuple[float, float]:
        return self.channel.output(self._delivers(self.channel), self.clock.now())

    def _channel_numbers(self) -> Limits:
        return Limits(1, len(self.channels), 1)

    def _channel_arg(self, call: Call) -> int:
        return round(to_number(call.arg(), self._channel_numbers()))

    def _number(
        self, pattern: str, name: str, limits: Limits, show: Callable[[float], str]
    ) -> Command:
        """A numeric setting `name` of the selected channel."""
        field = Field(lambda: self.channel, name)
        return number_setting(pattern, field.get, field.put, limits, show)

    def _choice(self, pattern: str, name: str, choices: tuple[str, ...]) -> Command:
        field = Field(lambda: self.channel, name)
        return choice_setting(pattern, choices, field.get, field.put)

    def _stepped(
        self, path: str, name: str, limits: Limits, show: Callable[[float], str]
    ) -> Command:
        """A level that also takes UP/DOWN: a step of the channel's `<name>_step` (-222 past the
        range)."""
        base = self._number(f"{path}[:LEVel][:IMMediate][:AMPLitude]", name, limits, show)

        def write(call: Call) -> None:
            word = call.arg()
            direction = next(
                (d for d, w in ((1, "UP"), (-1, "DOWN")) if mnemonic_matches(w, word)), 0
            )
            if not direction:
                assert base.write is not None
                base.write(call)
                return
            value = getattr(self.channel, name) + direction * getattr(self.channel, f"{name}_step")
            if not limits.low <= round(value, 6) <= limits.high:
                raise ScpiError(DATA_OUT_OF_RANGE)
            setattr(self.channel, name, round(value, 6))

        return Command(base.pattern, write, base.read)

    def _select_by_name(self, call: Call) -> None:
        found = _CHANNEL_NAME.fullmatch(call.arg())
        if found is None or not 1 <= int(found[1]) <= len(self.channels):
            raise ScpiError(ILLEGAL_PARAMETER_VALUE)
        self.selected = int(found[1]) - 1

    def _selected_name(self) -> str:
        return f"OUTP{self.selected + 1}"

    def _apply(self, call: Call) -> None:
        volts_arg, amps_arg = call.count(2, 2)
        volts, amps = to_number(volts_arg, VOLTAGE), to_number(amps_arg, CURRENT)
        self.channel.voltage, self.channel.current = volts, amps

    def _applied(self) -> str:
        return f"{volts_text(self.channel.voltage)},{amps_text(self.channel.current)}"

    def _output(self, call: Call) -> None:
        on = to_bool(call.arg())
        self.channel.arm(on)
        if on:
            self.master = True

    def _output_state(self) -> str:
        return "1" if self._delivers(self.channel) else "0"

    def _arb_channel(self, call: Call) -> Channel:
        return self.channels[self._channel_arg(call) - 1]

    def _link(self, call: Call) -> None:
        number = self._channel_arg(call)
        if number != self.selected + 1:
            self.channel.fuse_links.add(number)

    def _linked(self, call: Call) -> str:
        return "1" if self._channel_arg(call) in self.channel.fuse_links else "0"

    def _save_setup(self, slot: float) -> None:
        self.setups[round(slot)] = copy.deepcopy(self.channels)

    def _recall_setup(self, slot: float) -> None:
        if round(slot) not in self.setups:
            raise ScpiError(SETTINGS_CONFLICT)
        self.channels = copy.deepcopy(self.setups[round(slot)])
