"""The run metadata schema: what every start document of the stand's plans carries.

Plans build a `RunMetadata` before the run starts, so bad metadata (an occupied slot without a
module id, an unknown stage) is refused before any hardware moves. Callbacks read the same model
back from the start document, so the analysis, the reports and the Tiled searches all agree on
the keys:

- `stand`, `operator`, `test`, `stage`, `versions` and `qualification_uid` (links the runs of
  one qualification);
- `slots`: per slot number (a string, as in JSON) its module id, sensor type, area and bias limit;
- `module_ids`: every module of the run (search with `FullText('"id"')`, then check the list), and
  `module_id` when the run holds exactly one module (search with `Key("start.module_id") == id`);
- `iv_keys`: for IV runs, per slot the data keys of its bias, current, temperature and state.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from teststand.config import SensorType
from teststand.errors import TeststandError
from teststand.itk import Layer, Stage


class MetadataError(TeststandError, ValueError):
    """Run metadata that does not validate; refused before the run starts."""


STAGES: tuple[str, ...] = get_args(Stage)
TestName = Literal[
    "iv",
    "hv_ramp",
    "hv_off",
    "temperature",
    "thermal_cycle",
    "long_term_stability",
    "threshold_scan",
    "trim_equalisation",
    "source_scan",
    "bias_scan_detector",
]
#: A slot's state at an IV point: measuring (a valid point), unsettled (its bias was not at the
#: set point when read: not a valid point, the scan goes on), or stopped and why.
IVState = Literal["measuring", "unsettled", "done", "compliance", "breakdown", "error"]
IV_STATES: tuple[IVState, ...] = get_args(IVState)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SlotInfo(_Model):
    """The module in one slot, as the run saw it."""

    module_id: str = Field(min_length=1)
    sensor: SensorType
    area_cm2: float = Field(gt=0)
    max_bias: float = Field(ge=0, description="V, magnitude")
    hv_channel: str = ""
    #: The ITk layer the official analysis judges it as (None in runs from before it was kept).
    layer: Layer | None = None


class IVKeys(_Model):
    """Data keys of one slot's IV points in the primary stream."""

    bias: str
    current: str
    temperature: str | None = None
    state: str


class IVSettings(_Model):
    start: float
    stop: float
    step: float
    settle: float = Field(ge=0)
    compliance: float = Field(gt=0, description="A")
    polarity: str = ""


class RunMetadata(_Model):
    """Validated start-document metadata; `start_metadata()` is what goes into `open_run`."""

    model_config = ConfigDict(extra="allow", frozen=True)

    stand: str = Field(min_length=1)
    operator: str = Field(min_length=1)
    test: TestName
    stage: Stage
    slots: dict[str, SlotInfo] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)
    qualification_uid: str | None = None
    iv: IVSettings | None = None
    iv_keys: dict[str, IVKeys] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _iv_keys_name_slots(self) -> RunMetadata:
        unknown = set(self.iv_keys) - set(self.slots)
        if unknown:
            raise ValueError(f"iv_keys name slots {sorted(unknown)} that are not in slots")
        return self

    @property
    def module_ids(self) -> list[str]:
        return [info.module_id for info in self.slots.values()]

    def start_metadata(self) -> dict[str, Any]:
        """The plain dict for the start document, with the search helpers filled in."""
        md = self.model_dump(mode="json", exclude_none=True)
        md["module_ids"] = self.module_ids
        if len(self.module_ids) == 1:
            md["module_id"] = self.module_ids[0]
        return md


def validate_metadata(**fields: Any) -> RunMetadata:
    """Build a `RunMetadata`, turning validation errors into one readable `MetadataError`."""
    try:
        return RunMetadata(**fields)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise MetadataError(f"run metadata refused before the run started: {problems}") from None


def read_metadata(start_doc: dict[str, Any]) -> RunMetadata | None:
    """The `RunMetadata` of a start document, or None when it is not one of the stand's runs."""
    fields = {k: v for k, v in start_doc.items() if k in RunMetadata.model_fields}
    try:
        return RunMetadata(**fields)
    except ValidationError:
        return None


__all__ = [
    "IV_STATES",
    "STAGES",
    "IVKeys",
    "IVSettings",
    "IVState",
    "MetadataError",
    "RunMetadata",
    "SlotInfo",
    "Stage",
    "TestName",
    "read_metadata",
    "validate_metadata",
]
