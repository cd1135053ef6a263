"""A collector's settings: from the command line or a `collectors:` section of a YAML file."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from teststand.collect.errors import CollectorError

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
    values = {**(section[name] or {}), **{k: v for k, v in overrides.items() if v is not None}}
    return make_config(name=name, **values)


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
