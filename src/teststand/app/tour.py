"""`teststand demo --transport`: start the simulated stand and exercise every instrument with
raw protocol commands through the transport, printing what it read."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from teststand.app.demo import load_simulated
from teststand.config import StandConfig
from teststand.devices import scpi
from teststand.devices.caen import protocol as caen
from teststand.devices.coldbox import protocol as coldbox
from teststand.devices.keithley.protocol import parse_reading
from teststand.devices.lauda import protocol as lauda
from teststand.stand.simulation import start_simulated_stand
from teststand.transport import Transport, connect

Exerciser = Callable[[Transport, Callable[[str], None]], Awaitable[None]]


async def exercise_caen(t: Transport, say: Callable[[str], None]) -> None:
    def group(text: str) -> list[float]:
        return caen.parse_numbers(text, count=8)

    for channel in range(8):
        volts = 50.0 + 25 * channel
        await t.query(caen.command("SET", "VSET", channel=channel, value=volts), caen.parse_ok)
        await t.query(caen.command("SET", "RUP", channel=channel, value=50), caen.parse_ok)
        await t.query(caen.command("SET", "ON", channel=channel), caen.parse_ok)
    say("VSET " + _row(await t.query("$CMD:MON,CH:8,PAR:VSET", group, idempotent=True), "V"))
    await asyncio.sleep(1.0)
    say("VMON " + _row(await t.query("$CMD:MON,CH:8,PAR:VMON", group, idempotent=True), "V"))
    say("IMON " + _row(await t.query("$CMD:MON,CH:8,PAR:IMON", group, idempotent=True), "uA"))
    status = await t.query("$CMD:MON,CH:8,PAR:STAT", group, idempotent=True)
    say("STAT " + " ".join(f"{int(s):>8d}" for s in status))
    for channel in range(8):
        await t.query(caen.command("SET", "OFF", channel=channel), caen.parse_ok)


async def exercise_lauda(t: Transport, say: Callable[[str], None]) -> None:
    say(f"TYPE {await t.query('TYPE', lauda.parse_text, idempotent=True)}")
    say(f"bath {await t.query('IN_PV_00', lauda.parse_number, idempotent=True):.2f} C")
    await t.query("OUT_SP_00_-10.00", lauda.parse_ok, idempotent=True)
    await t.query("START", lauda.parse_ok, idempotent=True)
    await asyncio.sleep(1.0)
    setpoint = await t.query("IN_SP_00", lauda.parse_number, idempotent=True)
    bath = await t.query("IN_PV_00", lauda.parse_number, idempotent=True)
    say(f"set point {setpoint:.2f} C, bath after 1 s of real time: {bath:.2f} C")


async def exercise_coldbox(t: Transport, say: Callable[[str], None]) -> None:
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


async def exercise_keithley(t: Transport, say: Callable[[str], None]) -> None:
    say(_identity(await t.query("*IDN?", scpi.parse_idn, idempotent=True)))
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


async def exercise_hmp4040(t: Transport, say: Callable[[str], None]) -> None:
    say(_identity(await t.query("*IDN?", scpi.parse_idn, idempotent=True)))
    await t.write("OUTP:GEN 1")
    for channel in (1, 2, 3, 4):
        await t.write(f"INST:NSEL {channel}")
        await t.write("APPL 1.8,2.5")
        await t.write("OUTP:SEL 1")
        volts = await t.query("MEAS:VOLT?", scpi.parse_float, idempotent=True)
        amps = await t.query("MEAS:CURR?", scpi.parse_float, idempotent=True)
        say(f"OUT{channel} {volts:6.3f} V {amps:6.3f} A")
    await t.write("OUTP:GEN 0")


EXERCISERS: dict[str, Exerciser] = {
    "caen-dt8033": exercise_caen,
    "lauda": exercise_lauda,
    "coldbox": exercise_coldbox,
    "keithley2410": exercise_keithley,
    "hmp4040": exercise_hmp4040,
}


def _identity(idn: scpi.Identity) -> str:
    return f"{idn.manufacturer} {idn.model}, serial {idn.serial}"


def _row(values: list[float], unit: str) -> str:
    return " ".join(f"{v:8.2f}" for v in values) + f" {unit}"


async def _exercise_all(config: StandConfig, urls: dict[str, str]) -> None:
    for name, url in urls.items():
        kind = config.instruments[name].kind
        print(f"\n== {name} ({kind}) at {url}")
        exerciser = EXERCISERS.get(kind)
        if exerciser is None:
            print("   (no demo for this kind)")
            continue
        async with connect(url, name=name) as link:
            await exerciser(link, lambda line: print("   " + line))
            stats = link.stats
            print(
                f"   link: {stats.exchanges} exchanges, {stats.retries} retries, "
                f"last round trip {stats.last_round_trip_ms:.2f} ms"
            )


def run_tour(stand_file: str) -> int:
    config = load_simulated(stand_file)
    started = time.monotonic()
    stand, urls = start_simulated_stand(config)
    try:
        print(
            f"Simulated stand {config.name!r}: {len(urls)} instruments at {config.speed:g}x speed"
        )
        asyncio.run(_exercise_all(config, urls))
    finally:
        stand.stop()
    print(f"\nDone in {time.monotonic() - started:.1f} s.")
    return 0
