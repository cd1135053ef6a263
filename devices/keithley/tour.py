"""This instrument's tour (`teststand demo --transport`): raw commands, and what it read."""

from __future__ import annotations

from teststand.devices import scpi
from teststand.devices._tour import Say, identity
from teststand.devices.keithley.protocol import parse_reading
from teststand.transport import Transport


async def exercise(t: Transport, say: Say) -> None:
    say(identity(await t.query("*IDN?", scpi.parse_idn, idempotent=True)))
    for command in (
        "*RST",
        ":SOUR:FUNC VOLT",
        ":SOUR:VOLT:RANG 1000",
        ':SENS:FUNC "CURR"',
        ":SENS:CURR:PROT 1e-4",
        ":SENS:CURR:NPLC 1",
        ":FORM:ELEM VOLT,CURR,RES,TIME,STAT",
        ":OUTP ON",
    ):
        await t.write(command)
    for volts in (0, -20, -50, -100):
        await t.write(f":SOUR:VOLT {volts}")
        reading = await t.query(":READ?", parse_reading, idempotent=True)
        say(
            f"IV {reading.voltage:8.1f} V  {reading.current * 1e6:10.4f} uA"
            f"  compliance={reading.in_compliance}"
        )
    await t.write(":OUTP OFF")
    code, message = await t.query(":SYST:ERR?", scpi.parse_error, idempotent=True)
    say(f"error queue: {code},{message!r}")
