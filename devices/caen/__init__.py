"""CAEN high-voltage supplies: 803x (DT8033) and 14xx (N1470) dialects."""

from .client import CaenClient, CaenError, ChannelStatus, decode_status
from .device import CaenChannel, CaenHV, PowerDown

__all__ = [
    "CaenChannel",
    "CaenClient",
    "CaenError",
    "CaenHV",
    "ChannelStatus",
    "PowerDown",
    "decode_status",
]
