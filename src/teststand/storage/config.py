"""The stand file's `storage:` section."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from teststand.storage.errors import StorageError


class StorageConfig(BaseModel):
    """Where runs go: a shared Tiled server (`tiled`), or an embedded one under `data_dir`.

    The journal of runs not yet verified in Tiled lives in `journal_dir` (default
    `data_dir/journal`). Give the API key inline (`api_key`) or name an environment variable
    that holds it (`api_key_env`), which keeps it out of the stand file.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    tiled: str | None = Field(default=None, pattern=r"^https?://")
    api_key: str | None = None
    api_key_env: str | None = None
    data_dir: Path = Path("~/teststand-data")
    journal_dir: Path | None = None
    detector_dir: Path | None = None
    flush_interval: float = Field(default=0.2, gt=0, le=1.0)
    replay_interval: float = Field(default=10.0, gt=0)
    min_free_mb: float = Field(default=500.0, ge=0)

    @model_validator(mode="after")
    def _one_key_source(self) -> StorageConfig:
        if self.api_key and self.api_key_env:
            raise ValueError("give either api_key or api_key_env, not both")
        return self

    @property
    def data_path(self) -> Path:
        return self.data_dir.expanduser()

    @property
    def journal_path(self) -> Path:
        return (self.journal_dir or self.data_path / "journal").expanduser()

    @property
    def detector_path(self) -> Path:
        """Detector files written by devices; the server reads them in place (never copies)."""
        return (self.detector_dir or self.data_path / "detector").expanduser()

    def resolved_api_key(self) -> str | None:
        if self.api_key_env is None:
            return self.api_key
        key = os.environ.get(self.api_key_env)
        if not key:
            raise StorageError(
                f"storage.api_key_env names {self.api_key_env}, but that environment variable is "
                "not set: export it with the Tiled API key"
            )
        return key
