"""ophyd-async devices of the stand instruments, each beside its protocol client.

from teststand.devices import CaenHV, LaudaChiller, ColdBox, Keithley2410, HMP4040, ModuleSlot
"""

from .caen import CaenChannel, CaenHV
from .coldbox import ColdBox
from .hmp4040 import HMP4040, HMP4040Channel
from .keithley import Keithley2410
from .lauda import LaudaChiller
from .slot import ModuleSlot

__all__ = [
    "HMP4040",
    "CaenChannel",
    "CaenHV",
    "ColdBox",
    "HMP4040Channel",
    "Keithley2410",
    "LaudaChiller",
    "ModuleSlot",
]
