"""This instrument's tour (`teststand demo --transport`): raw commands, and what it read."""

from __future__ import annotations

from teststand.devices import scpi
from teststand.devices._tour import Say, identity
from teststand.transport import Transport


async def exercise(t: Transport, say: Say) -> None:
    say(identity(await t.query("*IDN?", scpi.parse_idn, idempotent=True)))
    await t.write("OUTP:GEN 1")
    for channel in (1, 2, 3, 4):
        await t.write(f"INST:NSEL {channel}")
        await t.write("APPL 1.8,2.5")
        await t.write("OUTP:SEL 1")
        volts = await t.query("MEAS:VOLT?", scpi.parse_float, idempotent=True)
        amps = await t.query("MEAS:CURR?", scpi.parse_float, idempotent=True)
        say(f"OUT{channel} {volts:6.3f} V {amps:6.3f} A")
    await t.write("OUTP:GEN 0")
