"""Lauda chillers (ECO, Proline, Integral XT, Variocool)."""

from .client import LaudaClient, LaudaError
from .device import CoolingMode, LaudaChiller

__all__ = ["CoolingMode", "LaudaChiller", "LaudaClient", "LaudaError"]
