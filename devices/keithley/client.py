"""Async client of a Keithley 2400 / 2410 / 2450 source-measure unit sourcing voltage."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Literal

from teststand.devices._backend import SingleFlight
from teststand.devices.keithley.protocol import COMPLIANCE_BIT, ELEMENTS, Reading, parse_reading
from teststand.devices.scpi import (
    KEITHLEY_NUMBER,
    KEITHLEY_READING,
    ScpiClient,
    parse_bool,
    parse_float,
    parse_floats,
)
from teststand.errors import ReplyFormatError, TeststandError

Dialect = Literal["2400", "2410", "2450"]
Terminals = Literal["FRONT", "REAR"]

#: `:FORM:ELEM` the IV set-up asks a 2400/2410 for (TIME and RES are not used by the device).
IV_ELEMENTS = ("VOLT", "CURR", "STAT")
NPLC_RANGE = (0.01, 10.0)


class KeithleyError(TeststandError):
    """A Keithley SMU request that cannot be carried out as asked."""


class KeithleyValueError(KeithleyError, ValueError):
    """A value outside what the model accepts; refused before anything is sent."""


@dataclass(frozen=True)
class Model:
    """What differs between the models: the largest source level, compliance and read commands."""

    max_voltage: float  # V, the largest level on the top range
    max_current: float  # A, the largest compliance
    compliance: str  # the command setting the current limit

    @property
    def is_2450(self) -> bool:
        return self.compliance.startswith(":SOUR")


MODELS: dict[Dialect, Model] = {
    "2400": Model(210.0, 1.05, ":SENS:CURR:PROT"),
    "2410": Model(1100.0, 1.05, ":SENS:CURR:PROT"),
    "2450": Model(210.0, 1.05, ":SOUR:VOLT:ILIM"),
}
#: A 2450 reads source voltage and measured current from its buffer; the compliance flag comes
#: from the limit's TRIP query on the same line, so one line per reading on either family.
READ_2450 = ':READ? "defbuffer1",SOUR,READ;:SOUR:VOLT:ILIM:TRIP?'


@dataclass(frozen=True)
class Settings:
    """The IV configuration as the unit reports it."""

    source_function: str
    sense_function: str
    compliance: float  # A
    nplc: float
    voltage_range: float  # V
    auto_range: bool


def parse_reading_2450(text: str, form: re.Pattern[str] | None = None) -> Reading:
    """`<source V>,<current A>;<tripped>` from `READ_2450`."""
    values, _, tripped = text.partition(";")
    voltage, current = parse_floats(values, 2, form)
    status = 1 << COMPLIANCE_BIT if parse_bool(tripped) else 0
    return Reading(voltage=voltage, current=current, status=status)


#: A `:SOUR:FUNC?` reply (`VOLT`) and a `:SENS:FUNC?` reply (`"CURR:DC"`, a list on the 2400).
SOURCE_FUNCTION = re.compile(r"[A-Za-z]+")
SENSE_FUNCTIONS = re.compile(r'"[A-Za-z:]+"(?:,"[A-Za-z:]+")*')


def parse_settings(text: str, form: re.Pattern[str] | None = None) -> Settings:
    """The replies to the six queries of `KeithleyClient.settings()`, on one line."""
    parts = text.split(";")
    if len(parts) != 6:
        raise ReplyFormatError(f"expected 6 settings separated by ';', got {text!r}")
    source, sense, compliance, nplc, voltage_range, auto = (part.strip(" ") for part in parts)
    if not SOURCE_FUNCTION.fullmatch(source) or not SENSE_FUNCTIONS.fullmatch(sense):
        raise ReplyFormatError(f"expected SCPI function names, got {source!r} and {sense!r}")
    return Settings(
        source_function=source,
        sense_function=sense.strip('"'),
        compliance=parse_float(compliance, form),
        nplc=parse_float(nplc, form),
        voltage_range=parse_float(voltage_range, form),
        auto_range=parse_bool(auto),
    )


#: The long forms of the `:FORM:ELEM` names.
LONG_FORMS = {"VOLTAGE": "VOLT", "CURRENT": "CURR", "RESISTANCE": "RES", "STATUS": "STAT"}


def parse_elements(text: str) -> tuple[str, ...]:
    """A `:FORM:ELEM?` reply (`VOLT,CURR,STAT`, long forms too) as short element names."""
    names = []
    for item in text.strip().upper().split(","):
        name = LONG_FORMS.get(item.strip(), item.strip())
        if name not in ELEMENTS:
            raise ReplyFormatError(f"unknown element {item!r} in {text!r}")
        names.append(name)
    return tuple(names)


class KeithleyClient(ScpiClient):
    """`await smu.measure()`, `configure_iv(...)`, `set_level(v)`, `set_output(on)`, `settings()`.

    `last` is the most recent reading (`measure()` takes one; `latest()` reuses it).
    `keep_unused()` holds a reading (a move's arrival check) for `take_unused()`, which hands it
    out once, while it is younger than asked and nothing was set since.
    """

    def __init__(self, url: str, *, dialect: Dialect = "2410", name: str = "keithley") -> None:
        if dialect not in MODELS:
            raise KeithleyValueError(
                f"unknown Keithley dialect {dialect!r}; use one of {', '.join(MODELS)}"
            )
        super().__init__(url, name=name, terminator="LF", baudrate=9600, timeout=2.0)
        self.dialect: Dialect = dialect
        self.model = MODELS[dialect]
        self.elements: tuple[str, ...] = ELEMENTS
        self.output_on: bool | None = None  # as last read or written; None when unknown
        self.last: Reading | None = None
        self._unused: tuple[Reading, float] | None = None
        self._measure = SingleFlight(self._read)
        self._settings = SingleFlight(self._query_settings)

    async def on_open(self) -> None:
        identity = await self.identify()
        found = re.search(r"\b24[0-9]0\b", identity.model)
        if found is None or found[0] != self.dialect:
            raise KeithleyError(
                f"{self.name} ({self.url}) identifies as {identity.manufacturer} "
                f"{identity.model!r}, not a {self.dialect}; pass the dialect of the unit "
                f"({', '.join(MODELS)})"
            )
        await self.discard_stale_errors()
        if not self.model.is_2450:
            self.elements = await self.query(":FORM:ELEM?", parse_elements)
        await self.output()

    # -- readings ------------------------------------------------------------------------------
    async def measure(self) -> Reading:
        """Take one reading (one `:READ?` line); concurrent callers share it."""
        return await self._measure()

    def keep_unused(self, reading: Reading) -> None:
        self._unused = (reading, time.monotonic())

    def take_unused(self, max_age: float) -> Reading | None:
        unused, self._unused = self._unused, None
        if unused is None or time.monotonic() - unused[1] > max_age:
            return None
        return unused[0]

    async def latest(self) -> Reading:
        """The last reading, or a new one if none was taken yet."""
        return self.last if self.last is not None else await self.measure()

    async def _read(self) -> Reading:
        form = self.number_form
        if self.model.is_2450:
            reading = await self.query(READ_2450, lambda text: parse_reading_2450(text, form))
        else:
            if self.output_on is False:
                raise KeithleyError(
                    f"{self.name}: the output is off and a {self.dialect} measures nothing then; "
                    "switch it on (on()) before reading"
                )
            signed = KEITHLEY_READING if form is not None else None
            reading = await self.query(
                ":READ?", lambda text: parse_reading(text, self.elements, signed)
            )
        self.last = reading
        return reading

    # -- source and output ---------------------------------------------------------------------
    def check_level(self, volts: float) -> None:
        if not abs(volts) <= self.model.max_voltage:
            raise KeithleyValueError(
                f"{self.name}: {volts} V is beyond the {self.dialect}'s ±{self.model.max_voltage} "
                "V; give a smaller level"
            )

    async def set_level(self, volts: float) -> None:
        """Write the source level (`:SOUR:VOLT`); the caller checks arrival by measuring."""
        self.check_level(volts)
        self._unused = None
        await self.send(f":SOUR:VOLT {volts:.6g}")

    async def level(self) -> float:
        form = self.number_form
        return await self.query(":SOUR:VOLT?", lambda text: parse_float(text, form))

    async def output(self) -> bool:
        self.output_on = await self.query(":OUTP?", parse_bool)
        return self.output_on

    async def set_output(self, on: bool) -> None:
        """Switch the output; switched on, take a reading so `last` shows the live output."""
        self.last = None
        self.output_on = None
        await self.configure(f":OUTP {'ON' if on else 'OFF'}")
        self.output_on = on
        if on:
            await self.measure()

    # -- configuration -------------------------------------------------------------------------
    async def configure(self, *commands: str, after: str | None = None) -> None:
        self._unused = None
        await super().configure(*commands, after=after)

    async def settings(self) -> Settings:
        """The IV configuration in one round trip; concurrent callers share it."""
        return await self._settings()

    async def _query_settings(self) -> Settings:
        queries = (
            ":SOUR:FUNC?",
            ":SENS:FUNC?",
            f"{self.model.compliance}?",
            ":SENS:CURR:NPLC?",
            ":SOUR:VOLT:RANG?",
            ":SOUR:VOLT:RANG:AUTO?",
        )
        form = self.number_form
        return await self.query(";".join(queries), lambda text: parse_settings(text, form))

    @property
    def number_form(self) -> re.Pattern[str] | None:
        """The exact number format replies are checked against, with `strict_formats`."""
        return KEITHLEY_NUMBER if self.transport.options.strict_formats else None

    def check_compliance(self, amps: float) -> None:
        if not 0 < amps <= self.model.max_current:
            raise KeithleyValueError(
                f"{self.name}: compliance {amps} A must be > 0 and <= "
                f"{self.model.max_current} A (the {self.dialect}'s limit); give it in amperes"
            )

    def check_nplc(self, nplc: float) -> None:
        low, high = NPLC_RANGE
        if not low <= nplc <= high:
            raise KeithleyValueError(
                f"{self.name}: NPLC {nplc} is outside {low}..{high} power-line cycles"
            )

    async def set_compliance(self, amps: float) -> None:
        self.check_compliance(amps)
        await self.configure(f"{self.model.compliance} {amps:.6g}")

    async def set_nplc(self, nplc: float) -> None:
        self.check_nplc(nplc)
        await self.configure(f":SENS:CURR:NPLC {nplc:.6g}")

    async def set_voltage_range(self, volts: float) -> None:
        """A fixed source range holding `volts`; the unit refuses one below the present level."""
        self.check_level(volts)
        await self.configure(f":SOUR:VOLT:RANG {abs(volts):.6g}")

    async def set_auto_range(self, on: bool) -> None:
        await self.configure(f":SOUR:VOLT:RANG:AUTO {'ON' if on else 'OFF'}")

    async def configure_iv(
        self,
        compliance: float,
        nplc: float = 1.0,
        voltage_range: float | None = None,
        terminals: Terminals = "FRONT",
    ) -> None:
        """Reset the unit and set it up to source voltage and measure current (output left off).

        `voltage_range` None means auto range. The unit is reset, so this is refused while the
        output is on: ramp down and switch off first.
        """
        self.check_compliance(compliance)
        self.check_nplc(nplc)
        if voltage_range is not None:
            self.check_level(voltage_range)
        if terminals not in ("FRONT", "REAR"):
            raise KeithleyValueError(f"{self.name}: terminals must be FRONT or REAR")
        if await self.output():
            raise KeithleyError(
                f"{self.name}: configure_iv resets the unit, which would drop the bias at once; "
                "ramp to 0 V and switch the output off first"
            )
        source_range = (
            ":SOUR:VOLT:RANG:AUTO ON"
            if voltage_range is None
            else f":SOUR:VOLT:RANG {abs(voltage_range):.6g}"
        )
        commands = [
            "*RST",
            ":SOUR:FUNC VOLT",
            source_range,
            ':SENS:FUNC "CURR"',
            f"{self.model.compliance} {compliance:.6g}",
            f":SENS:CURR:NPLC {nplc:.6g}",
            f":ROUT:TERM {terminals[:4]}",
        ]
        if not self.model.is_2450:
            commands.append(f":FORM:ELEM {','.join(IV_ELEMENTS)}")
        self.output_on = False  # *RST switches the output off
        self.last = None
        try:
            await self.configure(*commands, after="configure_iv")
        finally:
            if not self.model.is_2450:
                self.elements = await self.query(":FORM:ELEM?", parse_elements)
