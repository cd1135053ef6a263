"""Rohde & Schwarz HMP4040 / HMP2030 low-voltage supplies."""

from teststand.devices.hmp4040.client import (
    ChannelSettings,
    HMPClient,
    HMPError,
    HMPValueError,
    Measurement,
)
from teststand.devices.hmp4040.device import HMP4040, HMP4040Channel

__all__ = [
    "HMP4040",
    "ChannelSettings",
    "HMP4040Channel",
    "HMPClient",
    "HMPError",
    "HMPValueError",
    "Measurement",
]
