"""The coldbox (PSI "Tessie"-like line protocol): temperature, humidity, dry air, TECs."""

from teststand.devices.coldbox.client import ColdBoxClient, ColdBoxError, dew_point
from teststand.devices.coldbox.device import ColdBox

__all__ = ["ColdBox", "ColdBoxClient", "ColdBoxError", "dew_point"]
