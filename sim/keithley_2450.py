"""The 2450 command family: source limits (`ILIM`/`VLIM`), `PROT<n>` over-voltage protection, and
measurements into the reading buffer `defbuffer1` (`:READ?`, `:MEAS?`, `:FETC?`, `:INIT`,
`:COUN`, `:TRAC:*`). The behaviour is described in `teststand.sim.keithley`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from teststand.sim.keithley_2400 import STALE_DATA, manual_delay
from teststand.sim.keithley_model import (
    COMPLIANCE_LIMITS,
    DELAY_LIMITS,
    FILTER_COUNT_LIMITS,
    FUNCTIONS,
    Reading,
    resistance,
    setting_text,
)
from teststand.sim.scpi import (
    DATA_OUT_OF_RANGE,
    ILLEGAL_PARAMETER_VALUE,
    SETTINGS_CONFLICT,
    Call,
    Command,
    Limits,
    ScpiError,
    reader,
    to_choice,
    to_number,
    to_string,
)

if TYPE_CHECKING:
    from teststand.sim.keithley import Keithley2410

BUFFER_ELEMENTS = ("READing", "SOURce", "RELative")
BUFFERS = ("defbuffer1", "defbuffer2")
BUFFER_CAPACITY = 100_000
COUNT_LIMITS = Limits(1, 300_000, 1)
OVP_STEPS = (2, 5, 10, 20, 40, 60, 80, 100, 120, 140, 160, 180)


def commands_2450(smu: Keithley2410) -> list[Command]:
    limit, vlimit = "[:SOURce[1]]:VOLTage:ILIMit", "[:SOURce[1]]:CURRent:VLIMit"
    top = smu.dialect.max_level
    commands = [
        smu.number(f"{limit}[:LEVel]", "compliance", COMPLIANCE_LIMITS, smu.set_compliance),
        Command(f"{limit}:TRIPped", read=reader(partial(smu.limit_tripped, True))),
        smu.number(
            f"{vlimit}[:LEVel]",
            "voltage_compliance",
            Limits(-top, top, 21.0),
            smu.set_voltage_compliance,
        ),
        Command(f"{vlimit}:TRIPped", read=reader(partial(smu.limit_tripped, False))),
        Command(
            "[:SOURce[1]]:VOLTage:PROTection[:LEVel]",
            lambda call: _set_protection(smu, call),
            reader(lambda: _protection_text(smu)),
        ),
        Command(":READ", read=lambda call: _measure(smu, None, call, select=False)),
        Command(":MEASure", read=lambda call: _measure(smu, None, call, select=False)),
        Command(":FETCh", read=lambda call: _fetch(smu, call)),
        Command(":INITiate[:IMMediate]", lambda call: _trigger(smu, call, None), setting=False),
        smu.integer("[:SENSe[1]]:COUNt", "measure_count", COUNT_LIMITS),
        Command(":TRACe:ACTual", read=lambda call: _buffer_size(smu, call)),
        Command(":TRACe:CLEar", lambda call: _clear(smu, call), setting=False),
        Command(":TRACe:DATA", read=lambda call: _trace_data(smu, call)),
        Command(":TRACe:TRIGger", lambda call: _trigger(smu, call), setting=False),
    ]
    for function, (pattern, _) in FUNCTIONS.items():
        commands.append(Command(f":MEASure{pattern}", read=_measure_reader(smu, function)))
    return [*commands, *_settings(smu)]


def _settings(smu: Keithley2410) -> list[Command]:
    """Per-function forms of the 2400's global settings (one value serves every function)."""
    commands: list[Command] = []
    for function in ("CURRent[:DC]", "VOLTage[:DC]", "RESistance"):
        sense = f"[:SENSe[1]]:{function}"
        commands += [
            smu.flag(f"{sense}:AVERage[:STATe]", "filter"),
            smu.choice(f"{sense}:AVERage:TCONtrol", "filter_type", ("REPeat", "MOVing")),
            smu.integer(f"{sense}:AVERage:COUNt", "filter_count", FILTER_COUNT_LIMITS),
            smu.flag(f"{sense}:AZERo[:STATe]", "autozero"),
            smu.flag(f"{sense}:RSENse", "four_wire"),
        ]
    for function in ("VOLTage", "CURRent"):
        source = f"[:SOURce[1]]:{function}"
        commands += [
            smu.number(f"{source}:DELay", "source_delay", DELAY_LIMITS, manual_delay(smu)),
            smu.flag(f"{source}:DELay:AUTO", "source_delay_auto"),
            smu.flag(f"{source}:READ:BACK", "readback"),
        ]
    return commands


def _set_protection(smu: Keithley2410, call: Call) -> None:
    choice = to_choice(call.arg(), [*(f"PROT{v}" for v in OVP_STEPS), "NONE"])
    smu.settings.protection = smu.dialect.max_level if choice == "NONE" else float(choice[4:])


def _protection_text(smu: Keithley2410) -> str:
    volts = smu.settings.protection
    return "NONE" if volts >= smu.dialect.max_level else f"PROT{volts:g}"


# -- the reading buffer ------------------------------------------------------------------------


def _check_buffer(text: str) -> None:
    if to_string(text) not in BUFFERS:
        raise ScpiError(ILLEGAL_PARAMETER_VALUE)


def _fill(smu: Keithley2410, count: int | None = None) -> list[Reading]:
    """Take `:COUN` (or `count`) readings into defbuffer1; the oldest fall out when it is full."""
    taken = smu.take_readings(smu.settings.measure_count if count is None else count)
    smu.buffer = [*smu.buffer, *taken][-BUFFER_CAPACITY:]
    return taken


def _format(smu: Keithley2410, reading: Reading, elements: list[str]) -> str:
    point = reading.point
    measured = {"VOLT": point.voltage, "CURR": point.current, "RES": resistance(point)}
    function = smu.settings.functions[0] if smu.settings.functions else "CURR"
    values = {
        "READing": measured[function],
        "SOURce": point.voltage if smu.settings.sources_voltage else point.current,
        "RELative": reading.time,
    }
    return ",".join(setting_text(values[e]) for e in elements)


def _buffer_arguments(args: tuple[str, ...]) -> list[str]:
    """Check `"bufferName"[,element ...]`; the elements asked for (default READing)."""
    if args:
        _check_buffer(args[0])
    return [to_choice(text, BUFFER_ELEMENTS) for text in args[1:]] or ["READing"]


def _measure(smu: Keithley2410, function: str | None, call: Call, select: bool) -> str:
    elements = _buffer_arguments(call.count(0, 1 + 14))
    if select and function is not None:
        if smu.local:
            raise ScpiError(SETTINGS_CONFLICT)
        smu.settings.functions = (function,)
    return _format(smu, _fill(smu)[-1], elements)


def _measure_reader(smu: Keithley2410, function: str) -> Callable[[Call], str]:
    return lambda call: _measure(smu, function, call, select=True)


def _fetch(smu: Keithley2410, call: Call) -> str:
    elements = _buffer_arguments(call.count(0, 1 + 14))
    if not smu.buffer:
        raise ScpiError(STALE_DATA)
    return _format(smu, smu.buffer[-1], elements)


def _buffer_size(smu: Keithley2410, call: Call) -> str:
    _buffer_arguments(call.count(0, 1))
    return str(len(smu.buffer))


def _clear(smu: Keithley2410, call: Call) -> None:
    _buffer_arguments(call.count(0, 1))
    smu.buffer = []


def _trigger(smu: Keithley2410, call: Call, count: int | None = 1) -> None:
    """`:TRAC:TRIG` (one reading) or `:INIT` (`:COUN` readings) into defbuffer1."""
    _buffer_arguments(call.count(0, 1 if count == 1 else 0))
    _fill(smu, count)


def _trace_data(smu: Keithley2410, call: Call) -> str:
    """`:TRAC:DATA? <start>,<end>[,"buffer"[,elements]]`: readings start..end (from 1)."""
    args = call.count(2, 3 + 14)
    size = len(smu.buffer)
    start, end = (round(to_number(text, Limits(1, max(size, 1), 1))) for text in args[:2])
    if end < start or end > size:
        raise ScpiError(DATA_OUT_OF_RANGE)
    elements = _buffer_arguments(args[2:])
    return ",".join(_format(smu, reading, elements) for reading in smu.buffer[start - 1 : end])
