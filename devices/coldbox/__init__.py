"""The coldbox (PSI "Tessie"-like line protocol): temperature, humidity, dry air, TECs."""

from .client import ColdBoxClient, ColdBoxError, dew_point
from .device import ColdBox

__all__ = ["ColdBox", "ColdBoxClient", "ColdBoxError", "dew_point"]
