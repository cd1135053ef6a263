"""The stand file's `monitoring:` section: where `teststand monitor` writes the stand's PVs.

```yaml
monitoring:
  database: {url: "http://localhost:8086", db: teststand}          # InfluxDB 1.x (v1 API)
  # database: {url: "http://host:8086", api: v2, org: lab, bucket: teststand, token_env: TOKEN}
  journal_dir: ~/teststand-data/monitor-journal
  default: {deadband: 0.0, max_period: 60}
  pvs:                                   # PV suffix patterns (fnmatch), first match wins
    "SLOT*:BIAS": {deadband: 0.5, max_period: 10}
```
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseConfig(_Strict):
    """An InfluxDB (or anything speaking its line protocol): the v1 or the v2 write API."""

    url: str = Field(pattern=r"^https?://")
    api: Literal["v1", "v2"] = "v1"
    #: v1: the database, and optionally a user and password (inline or in an environment variable).
    db: str | None = None
    user: str | None = None
    password: str | None = None
    password_env: str | None = None
    #: v2: organisation, bucket and token (inline or in an environment variable).
    org: str | None = None
    bucket: str | None = None
    token: str | None = None
    token_env: str | None = None
    #: s: a write that takes longer counts as failed (its points go to the journal).
    timeout: float = Field(default=5.0, gt=0)

    @model_validator(mode="after")
    def _complete(self) -> DatabaseConfig:
        if self.api == "v1" and not self.db:
            raise ValueError("db: give the database name for the v1 API (db: teststand)")
        if self.api == "v2" and not (self.org and self.bucket):
            raise ValueError("org, bucket: the v2 API needs both (and token or token_env)")
        return self

    def secret(self) -> str | None:
        """The password (v1) or token (v2), inline or read from its environment variable."""
        inline, env = (self.password, self.password_env)
        if self.api == "v2":
            inline, env = (self.token, self.token_env)
        return inline if inline is not None else (os.environ.get(env) if env else None)


class PVPolicy(_Strict):
    """When a PV's change is written: it moved more than `deadband` (in its units) since the
    last written value, or `max_period` s passed since (then it is written again unchanged)."""

    deadband: float = Field(default=0.0, ge=0)
    max_period: float = Field(default=60.0, gt=0)


class MonitoringConfig(_Strict):
    database: DatabaseConfig
    #: Points waiting for the database (down or slow), oldest first; sent in order on return.
    journal_dir: Path = Path("~/teststand-data/monitor-journal")
    #: Bytes the journal may hold; a warning from `journal_warn` of it, refusal at the bound.
    journal_max_bytes: int = Field(default=1_000_000_000, gt=0)
    journal_warn: float = Field(default=0.8, gt=0, lt=1)
    #: s between two batched writes, and the most points in one write.
    flush_period: float = Field(default=0.5, gt=0, le=10)
    batch_size: int = Field(default=5000, gt=0)
    #: s between two points of the monitor's own counters.
    stats_period: float = Field(default=10.0, gt=0)
    default: PVPolicy = Field(default_factory=PVPolicy)
    pvs: dict[str, PVPolicy] = Field(default_factory=dict)
