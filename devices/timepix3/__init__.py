"""Timepix3 pixel detector on a SPIDR/Katherine-style readout (control socket, data stream)."""

from teststand.devices.timepix3.client import Timepix3Client, Timepix3Error
from teststand.devices.timepix3.device import Timepix3, Timepix3Mode
from teststand.devices.timepix3.hitfile import HitFileError
from teststand.devices.timepix3.protocol import Hits, PacketDecoder
from teststand.devices.timepix3.stream import DataStreamStopped

__all__ = [
    "DataStreamStopped",
    "HitFileError",
    "Hits",
    "PacketDecoder",
    "Timepix3",
    "Timepix3Client",
    "Timepix3Error",
    "Timepix3Mode",
]
