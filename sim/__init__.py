"""Instrument simulators that speak each instrument's wire protocol over a real pty or TCP socket.

Standard library only, and never imports `teststand.devices`: a driver and its simulator are two
independent readings of the same manual. See README.md in this folder.
"""

from .clock import SimClock
from .faults import Faults, FaultSpecError
from .instrument import SimInstrument
from .registry import UnknownSimulator, create, kinds
from .runner import RunningSim, SimThread, start_simulator
from .server import SimServer

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
