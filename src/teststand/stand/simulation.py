"""Run a stand file's instruments as simulators (`sim: true`) and point every URL at them."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlencode

from teststand.config import StandConfig
from teststand.sim.stand import SimSpec, SimStand, start_stand


def start_simulated_stand(
    config: StandConfig, *, transport: Literal["pty", "tcp"] = "pty"
) -> tuple[SimStand, dict[str, str]]:
    """Start a simulator for every instrument; return the stand and each instrument's URL."""
    specs = {
        name: SimSpec(
            kind=instrument.kind,
            faults=instrument.simulator.faults,
            baud=instrument.simulator.baud,
            latency=instrument.simulator.latency,
            options=instrument.simulator.options,
        )
        for name, instrument in config.instruments.items()
    }
    stand = start_stand(specs, speed=config.speed, transport=transport)
    urls: dict[str, str] = {}
    for name, address in stand.addresses().items():
        # The simulators serve the exact reply formats: check them (the stand file may say no).
        options = {"strict_formats": 1, **config.instruments[name].options}
        query = f"?{urlencode(options)}" if options else ""
        scheme = "tcp://" if transport == "tcp" else "serial://"
        urls[name] = f"{scheme}{address}{query}"
    return stand, urls
