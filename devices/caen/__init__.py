"""CAEN high-voltage supplies: 803x (DT8033) and 14xx (N1470) dialects."""

from teststand.devices.caen.client import CaenClient, CaenError, ChannelStatus, decode_status
from teststand.devices.caen.device import CaenChannel, CaenHV, PowerDown

__all__ = [
    "CaenChannel",
    "CaenClient",
    "CaenError",
    "CaenHV",
    "ChannelStatus",
    "PowerDown",
    "decode_status",
]
