"""This instrument's tour (`teststand demo --transport`): raw commands, and what it read."""

from __future__ import annotations

import asyncio

from teststand.devices._tour import Say
from teststand.devices.lauda import protocol as lauda
from teststand.transport import Transport


async def exercise(t: Transport, say: Say) -> None:
    say(f"TYPE {await t.query('TYPE', lauda.parse_text, idempotent=True)}")
    say(f"bath {await t.query('IN_PV_00', lauda.parse_number, idempotent=True):.2f} C")
    await t.query("OUT_SP_00_-10.00", lauda.parse_ok, idempotent=True)
    await t.query("START", lauda.parse_ok, idempotent=True)
    await asyncio.sleep(1.0)
    setpoint = await t.query("IN_SP_00", lauda.parse_number, idempotent=True)
    bath = await t.query("IN_PV_00", lauda.parse_number, idempotent=True)
    say(f"set point {setpoint:.2f} C, bath after 1 s of real time: {bath:.2f} C")
