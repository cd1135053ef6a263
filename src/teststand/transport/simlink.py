"""`sim://KIND?…`: start that simulator in this process and talk to it over a real pty.

This is the one place where the core imports `teststand.sim`; the simulator is reached only through
bytes on its pty, exactly as hardware would be.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import TYPE_CHECKING

from teststand.errors import InvalidURL
from teststand.transport.links import SerialLink
from teststand.transport.url import SIM_SERVER_OPTIONS, InstrumentURL

if TYPE_CHECKING:
    from teststand.transport.core import Transport


async def open_simulated(spec: InstrumentURL, transport_class: type[Transport]) -> Transport:
    from teststand.sim import FaultSpecError, UnknownSimulator, start_simulator

    server = {k: v for k, v in spec.sim_options.items() if k in SIM_SERVER_OPTIONS}
    instrument = {k: v for k, v in spec.sim_options.items() if k not in SIM_SERVER_OPTIONS}
    if "faults" in server:
        server["faults"] = str(server["faults"])
    try:
        sim = await asyncio.to_thread(start_simulator, spec.target, **server, **instrument)
    except (UnknownSimulator, FaultSpecError, ValueError) as exc:
        raise InvalidURL(str(exc), url=spec.url, hint="see `teststand sim serve --help`") from None
    link_spec = replace(spec, target=sim.address)
    transport = transport_class(spec, SerialLink(link_spec))
    transport.simulator = sim
    try:
        await transport.open()
    except BaseException:
        await asyncio.to_thread(sim.stop)
        raise
    return transport
