"""Instrument URLs and link options.

- `serial:///dev/ttyUSB0?baudrate=9600&bytesize=8&parity=N&stopbits=1&terminator=CRLF`
- `tcp://host:port?timeout=2`
- `sim://KIND?speed=100&faults=garble=0.1` (the simulator's own options go in the query too)

Keyword options given to `connect()` are defaults (usually the driver's); the URL's query
overrides them, because the URL is the site's word on how its instrument is wired.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import serial

from teststand.errors import InvalidURL

TERMINATORS = {"CR": "\r", "LF": "\n", "CRLF": "\r\n", "LFCR": "\n\r"}
SCHEMES = ("serial", "tcp", "sim")
#: Options of the simulator server itself; any other sim:// option goes to the instrument.
SIM_SERVER_OPTIONS = ("speed", "faults", "baud", "latency")


@dataclass(frozen=True)
class LinkOptions:
    """How to talk to one instrument: framing, timing, retry, and (for serial) the line settings."""

    name: str = ""
    write_terminator: str = "\r\n"
    read_terminator: str = "\n"
    encoding: str = "ascii"
    timeout: float = 1.0
    connect_timeout: float = 3.0
    attempts: int = 4
    backoff: float = 0.1
    flush_quiet: float = 0.02
    #: Check replies against the instrument's exact per-parameter formats (each driver says
    #: which formats it knows; on for the simulators, which serve exactly those).
    strict_formats: bool = False
    lock: bool = True
    baudrate: int = 9600
    bytesize: int = 8
    parity: str = "N"
    stopbits: float = 1
    xonxoff: bool = False
    rtscts: bool = False

    def with_terminator(self, value: str) -> LinkOptions:
        """Set both terminators; the reply still ends at LF when the terminator is CRLF."""
        read = "\n" if value.endswith("\n") else value[-1]
        return replace(self, write_terminator=value, read_terminator=read)


@dataclass(frozen=True)
class InstrumentURL:
    """A parsed URL: its scheme, its target (device path, host:port or simulator kind)."""

    url: str
    scheme: str
    target: str
    options: LinkOptions
    sim_options: dict[str, Any] = field(default_factory=dict)

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.target.rpartition(":")
        return host, int(port)


def parse_url(url: str, **defaults: Any) -> InstrumentURL:
    """Parse and validate `url`; `defaults` are LinkOptions fields the URL may override."""
    parts = urlsplit(url)
    scheme = parts.scheme
    if scheme not in SCHEMES:
        raise InvalidURL(
            f"unknown URL scheme {scheme!r}",
            url=url,
            hint="use serial:///dev/ttyUSB0, tcp://host:port or sim://KIND",
        )
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    sim_options: dict[str, Any] = {}
    if scheme == "sim":
        # A simulator serves the exact reply formats: check them unless told otherwise.
        defaults = {"strict_formats": True, **defaults}
        sim_options = {k: _sim_value(v) for k, v in query.items() if k not in _option_names()}
        query = {k: v for k, v in query.items() if k in _option_names()}
    options = _build_options(url, defaults, query)
    target = _target(url, scheme, parts.netloc, parts.path)
    return InstrumentURL(url, scheme, target, options, sim_options)


def _option_names() -> set[str]:
    return {f.name for f in fields(LinkOptions)} | {"terminator"}


def _target(url: str, scheme: str, netloc: str, path: str) -> str:
    if scheme == "serial":
        if netloc or not path.startswith("/"):
            raise InvalidURL(
                "a serial URL needs an absolute device path",
                url=url,
                hint="write three slashes: serial:///dev/ttyUSB0",
            )
        return path
    if scheme == "tcp":
        host, _, port = netloc.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536 or path not in ("", "/"):
            raise InvalidURL("a TCP URL needs a host and a port", url=url, hint="tcp://host:port")
        return netloc
    if not netloc:
        raise InvalidURL("a sim URL needs a simulator kind", url=url, hint="sim://caen-dt8033")
    return netloc


def _build_options(url: str, defaults: dict[str, Any], query: dict[str, str]) -> LinkOptions:
    allowed = _option_names()
    merged: dict[str, Any] = {}
    for source, values in (("option", defaults), ("URL option", query)):
        for key, value in values.items():
            if key not in allowed:
                raise InvalidURL(
                    f"unknown {source} {key!r}",
                    url=url,
                    hint=f"allowed: {', '.join(sorted(allowed))}",
                )
            merged[key] = value
    options = LinkOptions()
    terminator = merged.pop("terminator", None)
    if terminator is not None:
        options = options.with_terminator(_terminator(url, str(terminator)))
    converted = {key: _convert(url, key, value) for key, value in merged.items()}
    options = replace(options, **converted)
    _validate(url, options)
    return options


def _terminator(url: str, value: str) -> str:
    if value.upper() in TERMINATORS:
        return TERMINATORS[value.upper()]
    if value and set(value) <= {"\r", "\n"}:
        return value
    raise InvalidURL(
        f"unknown terminator {value!r}", url=url, hint=f"use one of {', '.join(TERMINATORS)}"
    )


def _convert(url: str, key: str, value: Any) -> Any:
    kind = {f.name: f.type for f in fields(LinkOptions)}[key]
    if key in ("write_terminator", "read_terminator"):
        return _terminator(url, str(value))
    if not isinstance(value, str):
        return value
    try:
        if kind == "bool":
            if value.lower() not in ("1", "0", "true", "false", "on", "off", "yes", "no"):
                raise ValueError(value)
            return value.lower() in ("1", "true", "on", "yes")
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
    except ValueError:
        raise InvalidURL(
            f"option {key}={value!r} is not a valid {kind}", url=url, hint=f"give {key} as a {kind}"
        ) from None
    return value


def _validate(url: str, o: LinkOptions) -> None:
    checks: list[tuple[bool, str, str]] = [
        (
            o.baudrate in serial.Serial.BAUDRATES,
            f"bad baud rate {o.baudrate}",
            "use a standard rate such as 9600, 19200, 57600 or 115200",
        ),
        (o.bytesize in (5, 6, 7, 8), f"bad byte size {o.bytesize}", "use 7 or 8"),
        (o.parity in ("N", "E", "O", "M", "S"), f"bad parity {o.parity!r}", "use N, E or O"),
        (o.stopbits in (1, 1.5, 2), f"bad stop bits {o.stopbits}", "use 1 or 2"),
        (o.timeout > 0, f"timeout must be > 0 s, got {o.timeout}", "give seconds, e.g. 1.0"),
        (o.attempts >= 1, f"attempts must be >= 1, got {o.attempts}", "1 means no retry"),
        (o.backoff >= 0, f"backoff must be >= 0 s, got {o.backoff}", "give seconds"),
        (bool(o.read_terminator), "the read terminator is empty", "use CR, LF or CRLF"),
    ]
    try:
        "x".encode(o.encoding)
    except LookupError:
        checks.append((False, f"unknown encoding {o.encoding!r}", "use ascii or latin-1"))
    for ok, problem, hint in checks:
        if not ok:
            raise InvalidURL(problem, url=url, hint=hint)


def _sim_value(raw: str) -> Any:
    """Simulator options come as text; numbers and JSON lists become values."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw
