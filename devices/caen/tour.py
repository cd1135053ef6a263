"""This instrument's tour (`teststand demo --transport`): raw commands, and what it read."""

from __future__ import annotations

import asyncio

from teststand.devices._tour import Say, row
from teststand.devices.caen import protocol as caen
from teststand.transport import Transport


async def exercise(t: Transport, say: Say) -> None:
    def group(text: str) -> list[float]:
        return caen.parse_numbers(text, count=8)

    for channel in range(8):
        volts = 50.0 + 25 * channel
        await t.query(caen.command("SET", "VSET", channel=channel, value=volts), caen.parse_ok)
        await t.query(caen.command("SET", "RUP", channel=channel, value=50), caen.parse_ok)
        await t.query(caen.command("SET", "ON", channel=channel), caen.parse_ok)
    say("VSET " + row(await t.query("$CMD:MON,CH:8,PAR:VSET", group, idempotent=True), "V"))
    await asyncio.sleep(1.0)
    say("VMON " + row(await t.query("$CMD:MON,CH:8,PAR:VMON", group, idempotent=True), "V"))
    say("IMON " + row(await t.query("$CMD:MON,CH:8,PAR:IMON", group, idempotent=True), "uA"))
    status = await t.query("$CMD:MON,CH:8,PAR:STAT", group, idempotent=True)
    say("STAT " + " ".join(f"{int(s):>8d}" for s in status))
    for channel in range(8):
        await t.query(caen.command("SET", "OFF", channel=channel), caen.parse_ok)
