"""Lauda chillers (ECO, Proline, Integral XT, Variocool)."""

from teststand.devices.lauda.client import LaudaClient, LaudaError
from teststand.devices.lauda.device import CoolingMode, LaudaChiller

__all__ = ["CoolingMode", "LaudaChiller", "LaudaClient", "LaudaError"]
