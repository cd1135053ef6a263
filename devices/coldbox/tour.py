"""This instrument's tour (`teststand demo --transport`): raw commands, and what it read."""

from __future__ import annotations

import asyncio

from teststand.devices._tour import Say
from teststand.devices.coldbox import protocol as coldbox
from teststand.transport import Transport


async def exercise(t: Transport, say: Say) -> None:
    async def environment() -> str:
        air = await t.query("get Temp_Air", coldbox.number_parser("Temp_Air"), idempotent=True)
        rh = await t.query("get RH", coldbox.number_parser("RH"), idempotent=True)
        dew = await t.query("get DP", coldbox.number_parser("DP"), idempotent=True)
        return f"air {air:.2f} C, RH {rh:.2f} %, dew point {dew:.2f} C"

    lid = await t.query("get Lid", coldbox.flag_parser("Lid", "closed", "open"), idempotent=True)
    say(f"lid {'closed' if lid else 'open'}; {await environment()}")
    await t.query("set valve0 on", coldbox.parse_ok, idempotent=True)
    await asyncio.sleep(1.0)
    flow = await t.query("get Flow", coldbox.number_parser("Flow"), idempotent=True)
    say(f"dry air {flow:.1f} l/min for 1 s: {await environment()}")
