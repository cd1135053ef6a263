"""Instrument simulators that speak each instrument's wire protocol over a real pty or TCP socket.

Standard library only, and never imports `teststand.devices`: a driver and its simulator are two
independent readings of the same manual. See README.md in this folder.
"""

from teststand.sim.clock import SimClock
from teststand.sim.faults import Faults, FaultSpecError
from teststand.sim.instrument import SimInstrument
from teststand.sim.registry import UnknownSimulator, create, kinds
from teststand.sim.runner import RunningSim, SimThread, start_simulator
from teststand.sim.server import SimServer

__all__ = [
    "FaultSpecError",
    "Faults",
    "RunningSim",
    "SimClock",
    "SimInstrument",
    "SimServer",
    "SimThread",
    "UnknownSimulator",
    "create",
    "kinds",
    "start_simulator",
]
