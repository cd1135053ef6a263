"""Rohde & Schwarz HMP4040 (HMP2030, HMP2020) low-voltage supply, SCPI over a line link.

Every channel drives a resistive load (option `loads`, Ω). A channel delivers only when it is
armed (`OUTP:SEL 1`) and the master switch is on (`OUTP:GEN 1`). It regulates its set voltage
unless V/R exceeds the current limit; then it is in constant-current mode at V = I_limit·R.

Choices (see also PROTOCOLS.md):

- Channel commands act on the channel picked by `INST:NSEL n` or `INST OUTn` (also `OUTPn`,
  `OUTPUTn`); `INST?` answers `OUTP1`..., `INST:NSEL?` the number. A channel number beyond the
  unit's count is -222, an `INST` name that is not a channel -224.
- Ranges: voltage 0–32 V, current limit 0–10 A, over-voltage protection 0–33 V (the power limit
  of 160 W per channel and the HMP2030's 5 A are not modelled). Out of range → -222.
  `MIN`/`MAX`/`DEF` are accepted for each, also in queries (`VOLT? MAX`). *RST: 0 V, 0.1 A,
  OVP 33 V, every channel disarmed, master off, channel 1 selected.
- `OUTP ON` arms the selected channel and turns the master on; `OUTP OFF` disarms the selected
  channel only. `OUTP?` answers 1 when the selected channel delivers (armed and master on).
- OVP (`VOLT:PROT x`): when a delivering channel's output voltage exceeds it, the channel is
  disarmed and `VOLT:PROT:TRIP?` answers 1 until `VOLT:PROT:CLE`; arming it again is allowed.
- Replies: `VOLT?`, `MEAS:VOLT?`, `VOLT:PROT?` with 3 decimals (`12.000`); `CURR?`,
  `MEAS:CURR?` with 4 (`1.2345`); `APPL?` as `12.000,1.0000`; switches as 1/0. Readings are exact
  (no noise). A channel that does not deliver measures 0.
- Errors, LOCAL refusal (-221) and line syntax: see `scpi.py`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from teststand.sim.clock import SimClock
from teststand.sim.scpi import (
    ILLEGAL_PARAMETER_VALUE,
    Call,
    Command,
    Field,
    Limits,
    ScpiError,
    ScpiInstrument,
    action,
    flag_setting,
    number_setting,
    reader,
    to_bool,
    to_number,
)

VOLTAGE = Limits(0.0, 32.0, 0.0)
CURRENT = Limits(0.0, 10.0, 0.1)
PROTECTION = Limits(0.0, 33.0, 33.0)
MODELS = {2: "HMP2020", 3: "HMP2030", 4: "HMP4040"}
FIRMWARE = "HW50020001/SW2.51"
_CHANNEL_NAME = re.compile(r"OUT(?:P|PUT)?([0-9]+)", re.IGNORECASE)


def volts_text(value: float) -> str:
    return f"{value + 0.0:.3f}"


def amps_text(value: float) -> str:
    return f"{value + 0.0:.4f}"


@dataclass
class Channel:
    """One output: settings, switch and protection state, and its load."""

    load: float  # Ω
    voltage: float = VOLTAGE.default
    current: float = CURRENT.default
    protection: float = PROTECTION.default
    armed: bool = False
    tripped: bool = False

    def output(self, delivering: bool) -> tuple[float, float]:
        """(volts, amps) at the terminals: constant voltage, or constant current past the limit."""
        if not delivering:
            return 0.0, 0.0
        amps = self.voltage / self.load
        if amps > self.current:
            return self.current * self.load, self.current
        return self.voltage, amps


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

    # -- ScpiInstrument ----------------------------------------------------------------------
    def identity(self) -> str:
        return f"ROHDE&SCHWARZ,{self.model},{self.serial},{FIRMWARE}"

    def reset(self) -> None:
        self.channels = [Channel(load) for load in self.loads]
        self.selected = 0
        self.master = False

    def settle(self) -> None:
        """Over-voltage protection: a delivering channel above its OVP level is switched off."""
        for channel in self.channels:
            volts, _ = channel.output(self._delivers(channel))
            if volts > channel.protection:
                channel.armed = False
                channel.tripped = True

    def commands(self) -> list[Command]:
        return [
            Command(":INSTrument[:SELect]", self._select_by_name, reader(self._selected_name)),
            number_setting(
                ":INSTrument:NSELect",
                lambda: self.selected + 1,
                self._select,
                Limits(1, len(self.channels), 1),
                lambda n: str(int(n)),
            ),
            self._number(
                "[:SOURce]:VOLTage[:LEVel][:IMMediate][:AMPLitude]", "voltage", VOLTAGE, volts_text
            ),
            self._number(
                "[:SOURce]:CURRent[:LEVel][:IMMediate][:AMPLitude]", "current", CURRENT, amps_text
            ),
            self._number(
                "[:SOURce]:VOLTage:PROTection[:LEVel]", "protection", PROTECTION, volts_text
            ),
            Command(
                "[:SOURce]:VOLTage:PROTection:TRIPped",
                read=reader(lambda: "1" if self.channel.tripped else "0"),
            ),
            Command(
                "[:SOURce]:VOLTage:PROTection:CLEar",
                action(lambda: setattr(self.channel, "tripped", False)),
            ),
            Command(":APPLy", self._apply, reader(self._applied)),
            flag_setting(":OUTPut:SELect", lambda: self.channel.armed, self._arm),
            flag_setting(":OUTPut:GENeral", lambda: self.master, self._switch_master),
            Command(":OUTPut[:STATe]", self._output, reader(self._output_state)),
            Command(":MEASure[:SCALar]:VOLTage[:DC]", read=reader(self._measure_volts)),
            Command(":MEASure[:SCALar]:CURRent[:DC]", read=reader(self._measure_amps)),
        ]

    def snapshot(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "selected": self.selected + 1,
            "master": self.master,
            "channels": [
                {**asdict(ch), "output": ch.output(self._delivers(ch))} for ch in self.channels
            ],
        }

    # -- channels ----------------------------------------------------------------------------
    @property
    def channel(self) -> Channel:
        """The selected channel."""
        return self.channels[self.selected]

    def _delivers(self, channel: Channel) -> bool:
        return channel.armed and self.master

    def _number(
        self, pattern: str, name: str, limits: Limits, show: Callable[[float], str]
    ) -> Command:
        """A numeric setting `name` of the selected channel."""
        field = Field(lambda: self.channel, name)
        return number_setting(pattern, field.get, field.put, limits, show)

    def _select(self, number: float) -> None:
        self.selected = int(number) - 1

    def _select_by_name(self, call: Call) -> None:
        found = _CHANNEL_NAME.fullmatch(call.arg())
        if found is None or not 1 <= int(found[1]) <= len(self.channels):
            raise ScpiError(ILLEGAL_PARAMETER_VALUE)
        self._select(int(found[1]))

    def _selected_name(self) -> str:
        return f"OUTP{self.selected + 1}"

    def _apply(self, call: Call) -> None:
        volts_arg, amps_arg = call.count(2, 2)
        volts, amps = to_number(volts_arg, VOLTAGE), to_number(amps_arg, CURRENT)
        self.channel.voltage, self.channel.current = volts, amps

    def _applied(self) -> str:
        return f"{volts_text(self.channel.voltage)},{amps_text(self.channel.current)}"

    def _arm(self, on: bool) -> None:
        self.channel.armed = on

    def _switch_master(self, on: bool) -> None:
        self.master = on

    def _output(self, call: Call) -> None:
        on = to_bool(call.arg())
        self.channel.armed = on
        if on:
            self.master = True

    def _output_state(self) -> str:
        return "1" if self._delivers(self.channel) else "0"

    def _measure_volts(self) -> str:
        return volts_text(self.channel.output(self._delivers(self.channel))[0])

    def _measure_amps(self) -> str:
        return amps_text(self.channel.output(self._delivers(self.channel))[1])
