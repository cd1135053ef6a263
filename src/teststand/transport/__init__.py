"""Talking to instruments: `connect(url)` gives an exclusively owned link with retry and recovery.

async with connect("serial:///dev/ttyUSB0?baudrate=9600", terminator="CRLF") as t:
    reply = await t.query("$CMD:MON,CH:8,PAR:VMON", idempotent=True)
"""

from teststand.errors import (
    GarbledReply,
    InstrumentBusy,
    InstrumentRefused,
    InvalidURL,
    LinkLost,
    PortUnavailable,
    ReplyFormatError,
    ReplyRefused,
    TransportError,
    TransportTimeout,
)
from teststand.transport.core import Connection, LinkStats, Transport, connect
from teststand.transport.url import InstrumentURL, LinkOptions, parse_url

__all__ = [
    "Connection",
    "GarbledReply",
    "InstrumentBusy",
    "InstrumentRefused",
    "InstrumentURL",
    "InvalidURL",
    "LinkLost",
    "LinkOptions",
    "LinkStats",
    "PortUnavailable",
    "ReplyFormatError",
    "ReplyRefused",
    "Transport",
    "TransportError",
    "TransportTimeout",
    "connect",
    "parse_url",
]
