"""Keithley 2400-family source-measure units (2400, 2410, 2450)."""

from teststand.devices.keithley.client import (
    KeithleyClient,
    KeithleyError,
    KeithleyValueError,
    Settings,
)
from teststand.devices.keithley.device import Keithley2410, KeithleyMoveLogic
from teststand.devices.keithley.protocol import Reading, parse_reading

__all__ = [
    "Keithley2410",
    "KeithleyClient",
    "KeithleyError",
    "KeithleyMoveLogic",
    "KeithleyValueError",
    "Reading",
    "Settings",
    "parse_reading",
]
