"""ophyd-async devices of the stand instruments, each beside its protocol client.

from teststand.devices import CaenHV, LaudaChiller, ColdBox, Keithley2410, HMP4040
"""

from teststand.devices.caen import CaenChannel, CaenHV
from teststand.devices.coldbox import ColdBox
from teststand.devices.hmp4040 import HMP4040, HMP4040Channel
from teststand.devices.keithley import Keithley2410
from teststand.devices.lauda import LaudaChiller

__all__ = [
    "HMP4040",
    "CaenChannel",
    "CaenHV",
    "ColdBox",
    "HMP4040Channel",
    "Keithley2410",
    "LaudaChiller",
]
