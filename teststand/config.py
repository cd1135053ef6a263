"""The stand file (YAML), validated with pydantic. Every error names its key path."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import InvalidURL, TeststandError
from .transport.url import parse_url

InstrumentKind = Literal["caen-dt8033", "caen-n1470", "lauda", "keithley2410", "hmp4040", "coldbox"]


class ConfigError(TeststandError, ValueError):
    """A stand file that does not validate; the message lists every bad key path."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SimulatorConfig(_Strict):
    """How the instrument is simulated when the stand runs with `sim: true`."""

    faults: str | None = None
    baud: int | None = Field(default=None, gt=0)
    latency: float = Field(default=0.0, ge=0)
    options: dict[str, Any] = Field(default_factory=dict)


class InstrumentConfig(_Strict):
    kind: InstrumentKind
    url: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    simulator: SimulatorConfig = Field(default_factory=SimulatorConfig)


class StandConfig(_Strict):
    name: str = Field(min_length=1)
    sim: bool = False
    speed: float = Field(default=1.0, gt=0)
    instruments: dict[str, InstrumentConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _urls(self) -> StandConfig:
        for name, instrument in self.instruments.items():
            if instrument.url is None:
                if not self.sim:
                    raise ValueError(f"instruments.{name}.url is missing (needed unless sim: true)")
                continue
            try:
                parse_url(instrument.url, **instrument.options)
            except InvalidURL as exc:
                raise ValueError(f"instruments.{name}: {exc}") from None
        return self


def load_stand(source: str | Path | dict[str, Any]) -> StandConfig:
    """Read and validate a stand file (a path) or an already parsed mapping."""
    where = "<dict>"
    if isinstance(source, dict):
        data: Any = source
    else:
        where = str(source)
        try:
            data = yaml.safe_load(Path(source).read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read stand file {where}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"stand file {where} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"stand file {where} must be a mapping with 'name' and 'instruments'")
    try:
        return StandConfig.model_validate(data)
    except ValidationError as exc:
        problems = "\n".join(
            f"  {'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"stand file {where} is invalid:\n{problems}") from None
