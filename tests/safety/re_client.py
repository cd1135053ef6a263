"""A plain RunEngine script for the process tests: the served stand, tied to the IOC's state
machine, LV on, then an IV scan of every slot at 500 V that dwells there (settle 600 s).

`python re_client.py STAND.yaml PREFIX [halt|refused]`: prints `scanning` once the scan has
started; with `halt`, calls `RE.halt()` as soon as any slot passes 100 V (during the ramp); with
`refused`, asks for a bias above the slots' limit and lets the refusal end the script, attached
and never detached (a user's script that fails).
"""

from __future__ import annotations

import logging
import sys
import threading
import time

import yaml
from bluesky import RunEngine
from bluesky.run_engine import call_in_bluesky_event_loop

from teststand.plans import iv_scan
from teststand.safety.ca_control import CAControl
from teststand.safety.runengine import attach
from teststand.stand import build


def main(path: str, prefix: str, mode: str = "") -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    RE = RunEngine()
    with open(path) as file:
        data = yaml.safe_load(file)
    stand = build(data)  # served: claims control of the stand
    control = call_in_bluesky_event_loop(CAControl.connect(prefix, "re_client"))
    attach(RE, control, heartbeat_period=0.2)

    async def prepare() -> None:
        for name in ("lv1", "lv2"):
            await stand.instruments[name].output.set(True)  # type: ignore[attr-defined]
        for channel in stand.instruments["hv"].channels.values():  # type: ignore[attr-defined]
            await channel.rate_up.set(50.0)
            await channel.rate_down.set(50.0)

    call_in_bluesky_event_loop(prepare())
    if mode == "refused":
        print("scanning", flush=True)
        RE(iv_scan(stand, slots="1", stop=10000, step=5))
    if mode == "halt":

        def halt_during_ramp() -> None:
            while True:
                volts = call_in_bluesky_event_loop(stand.slots[1].bias.get_value())
                if volts > 100:
                    RE.halt()
                    return
                time.sleep(0.02)

        threading.Thread(target=halt_during_ramp, daemon=True).start()
        print("scanning", flush=True)
        try:
            RE(iv_scan(stand, slots="1-8", start=500, stop=500, step=5, settle=0.0))
        finally:
            print("halted", flush=True)
            time.sleep(600)  # stay alive (heartbeat and connection): only the halt is seen
        return
    print("scanning", flush=True)
    RE(iv_scan(stand, slots="1-8", start=500, stop=500, step=5, settle=600.0))


if __name__ == "__main__":
    main(*sys.argv[1:])
