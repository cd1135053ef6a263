"""A collector's settings: from the command line or a `collectors:` section of a YAML file."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from teststand.collect.errors import CollectorError
from teststand.config import load_stand

#: libca's default `EPICS_CA_MAX_ARRAY_BYTES`: larger arrays are refused by every client.
CA_DEFAULT_MAX_ARRAY_BYTES = 16384
#: Bytes a DBR_TIME_DOUBLE array message carries besides its values (headers and padding).
CA_ARRAY_OVERHEAD = 64
PV_NAME = re.compile(r"^[A-Za-z0-9_:.\-\[\]<>;$]+$")


class CollectorConfig(BaseModel):
    """What to record and how; `length` samples of history per PV (a ring buffer)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    prefix: str = Field(min_length=1)
    pvs: list[str] = Field(min_length=1)
    mode: Literal["monitor", "period"] = "monitor"
    period: float | None = Field(default=None, gt=0)
    length: int = Field(default=2000, ge=1)
    publish: float = Field(default=0.5, gt=0, description="s between history PV updates")
    tiled: str | None = None
    api_key_env: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> CollectorConfig:
        if self.mode == "period" and self.period is None:
            raise ValueError("mode: period needs `period` (seconds between samples)")
        if self.mode == "monitor" and self.period is not None:
            raise ValueError("`period` is for mode: period; leave it out to record by monitor")
        bad = [pv for pv in self.pvs if not PV_NAME.match(pv)]
        if bad:
            raise ValueError(f"not PV names: {', '.join(map(repr, bad))}")
        twice = sorted({pv for pv in self.pvs if self.pvs.count(pv) > 1})
        if twice:
            raise ValueError(f"PVs named twice: {', '.join(twice)}")
        return self


def make_config(**values: Any) -> CollectorConfig:
    """A validated `CollectorConfig`, or a `CollectorError` naming every bad setting."""
    try:
        return CollectorConfig(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'collector'}: {e['msg']}" for e in exc.errors()
        )
        raise CollectorError(f"collector {values.get('name', '?')}: {problems}") from None


def load_section(path: Path, name: str, **overrides: Any) -> CollectorConfig:
    """Collector `name` of the `collectors:` section of the YAML file `path`."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise CollectorError(f"cannot read collectors from {path}: {exc}") from None
    section = data.get("collectors") if isinstance(data, dict) else None
    if not isinstance(section, dict) or name not in section:
        known = ", ".join(section) if isinstance(section, dict) else "none"
        raise CollectorError(
            f"{path} has no collector {name!r} under `collectors:` (it has: {known})"
        )
    return _with_overrides(name, section[name] or {}, overrides)


def _with_overrides(
    name: str, settings: dict[str, Any], overrides: dict[str, Any]
) -> CollectorConfig:
    values = {**settings, **{k: v for k, v in overrides.items() if v is not None}}
    return make_config(name=name, **values)


def stand_collector(path: Path, name: str, **overrides: Any) -> tuple[CollectorConfig, str]:
    """Collector `name` of the stand file `path` (its `collectors:` section) and its host."""
    placements = load_stand(path).collectors
    if name not in placements:
        raise CollectorError(
            f"the stand file {path} has no collector {name!r} under `collectors:` (it has: "
            f"{', '.join(placements) or 'none'})"
        )
    placement = placements[name]
    return _with_overrides(name, placement.settings(), overrides), placement.host


def check_host(name: str, host: str, path: Path) -> None:
    """Refuse to serve collector `name` here when the stand file places it on another host."""
    here = {"localhost", socket.gethostname(), socket.getfqdn()}
    try:
        address = socket.gethostbyname(host)
    except OSError:
        address = ""
    local = address.startswith("127.") or address in _local_addresses()
    if host not in here and not local:
        raise CollectorError(
            f"collector {name} runs on {host} (collectors.{name}.host in {path}), and this is "
            f"{socket.gethostname()}: run `teststand collector serve --stand {path} {name}` there"
        )


def _local_addresses() -> set[str]:
    import psutil  # type: ignore[import-untyped]

    return {a.address for addrs in psutil.net_if_addrs().values() for a in addrs}


def max_array_bytes() -> int:
    """This process's `EPICS_CA_MAX_ARRAY_BYTES` (libca's default when unset)."""
    raw = os.environ.get("EPICS_CA_MAX_ARRAY_BYTES", "")
    try:
        return int(raw) if raw else CA_DEFAULT_MAX_ARRAY_BYTES
    except ValueError:
        raise CollectorError(
            f"EPICS_CA_MAX_ARRAY_BYTES={raw!r} is not a number of bytes; set it to an integer"
        ) from None


def check_array_limit(length: int) -> None:
    """Refuse a history longer than Channel Access clients here accept, saying what to do."""
    needed = length * 8 + CA_ARRAY_OVERHEAD
    limit = max_array_bytes()
    if needed > limit:
        fits = (limit - CA_ARRAY_OVERHEAD) // 8
        raise CollectorError(
            f"a history of {length} samples is a {needed}-byte waveform, above the Channel "
            f"Access array limit here (EPICS_CA_MAX_ARRAY_BYTES={limit}): set "
            f"EPICS_CA_MAX_ARRAY_BYTES={needed} (or more) for the collector and for every client "
            f"that reads its history, or record at most {fits} samples per collector (--length "
            f"{fits}) and split the PVs or the time over several collectors"
        )
