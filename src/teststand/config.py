"""The stand file (YAML), validated with pydantic. Every error names its key path."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from ophyd_async.core import StrictEnum
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from teststand import kinds
from teststand.errors import InvalidURL, TeststandError
from teststand.itk import LAYER_AREA_CM2, ITkConfig, Layer, module_layer
from teststand.sim.faults import Faults
from teststand.storage.config import StorageConfig
from teststand.storage.monitoring import MonitoringConfig
from teststand.transport.url import parse_url


class ConfigError(TeststandError, ValueError):
    """A stand file that does not validate; the message lists every bad key path."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class SimulatorConfig(_Strict):
    """How the instrument is simulated when the stand runs with `sim: true`."""

    faults: str | None = None
    baud: int | None = Field(default=None, gt=0)
    latency: float = Field(default=0.0, ge=0)
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("faults")
    @classmethod
    def _valid_faults(cls, spec: str | None) -> str | None:
        Faults.parse(spec)  # FaultSpecError (a ValueError) names the bad item and the keys
        return spec


class InstrumentConfig(_Strict):
    #: A kind of the instrument registry (`teststand.kinds`).
    kind: str
    url: str | None = None
    #: Transport options (terminator, baudrate, timeout, …); they override the driver's defaults.
    options: dict[str, Any] = Field(default_factory=dict)
    #: Device options: `board` of a 14xx CAEN, `dialect` of a Keithley, `address` of a Lauda.
    settings: dict[str, Any] = Field(default_factory=dict)
    simulator: SimulatorConfig = Field(default_factory=SimulatorConfig)

    @field_validator("kind")
    @classmethod
    def _registered(cls, kind: str) -> str:
        if kind not in kinds.KINDS:
            raise ValueError(
                f"unknown instrument kind {kind!r}; known kinds: {', '.join(kinds.known())}"
            )
        return kind


#: Attribute names of the built stand that an instrument may not take.
RESERVED_NAMES = frozenset({"slots", "config", "instruments", "simulators", "name", "parent"})


class SensorType(StrictEnum):
    PLANAR = "planar"
    THREE_D = "3d"


class ModuleConfig(_Strict):
    """A mounted module: its ITk serial number (checked with itksn), sensor type and layer."""

    id: str = Field(min_length=1, description="the module's ITk serial number")
    sensor: SensorType = SensorType.PLANAR
    #: The layer the official analysis uses (L0: 3D triplet; L1, L2: planar quads); by default
    #: the one the serial number names.
    layer: Layer | None = None
    area_cm2: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _serial_number(self) -> ModuleConfig:
        named = module_layer(self.id)  # ValueError for a bad serial number
        if self.layer is not None and self.layer != named:
            raise ValueError(f"layer {self.layer}: serial number {self.id} is an {named} module")
        kind = SensorType.THREE_D if named == "L0" else SensorType.PLANAR
        if self.sensor is not kind:
            raise ValueError(
                f"sensor {self.sensor.value}: serial number {self.id} is an {named} module, "
                f"whose sensor is {kind.value}"
            )
        return self

    @property
    def qc_layer(self) -> Layer:
        return self.layer or module_layer(self.id)

    @property
    def area(self) -> float:
        return self.area_cm2 if self.area_cm2 is not None else LAYER_AREA_CM2[self.qc_layer]


class ChannelRef(_Strict):
    """`INSTRUMENT:CHANNEL`, e.g. `hv:3`."""

    instrument: str
    channel: int

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        if isinstance(value, str):
            name, sep, number = value.rpartition(":")
            if not sep or not name or not number.lstrip("-").isdigit():
                raise ValueError(f"expected INSTRUMENT:CHANNEL such as hv:3, got {value!r}")
            return {"instrument": name, "channel": int(number)}
        return value

    def __str__(self) -> str:
        return f"{self.instrument}:{self.channel}"


class SlotConfig(_Strict):
    hv: ChannelRef
    lv: ChannelRef | None = None
    temperature: ChannelRef | None = None
    #: The module mounted in the slot; absent for an empty slot.
    module: ModuleConfig | None = None


class BiasLimits(_Strict):
    """The highest bias (V) per sensor type. No default: a safety limit is never invented, so
    every sensor type that a slot's module has needs its limit in the stand file."""

    planar: float | None = Field(default=None, gt=0)
    three_d: float | None = Field(default=None, gt=0, alias="3d")

    def given(self, sensor: SensorType) -> float | None:
        return self.planar if sensor is SensorType.PLANAR else self.three_d

    def for_sensor(self, sensor: SensorType) -> float:
        limit = self.given(sensor)
        if limit is None:
            raise ConfigError(
                f"limits.max_bias.{sensor.value} is missing: give the highest bias (V) for "
                f"{sensor.value} sensors in the stand file"
            )
        return limit


class TemperatureRange(_Strict):
    min: float = -45.0
    max: float = 40.0

    @model_validator(mode="after")
    def _ordered(self) -> TemperatureRange:
        if self.min >= self.max:
            raise ValueError(f"min {self.min} must be below max {self.max}")
        return self


class Limits(_Strict):
    """Safety limits: bias per sensor type (V), current compliance (A), temperatures (°C)."""

    max_bias: BiasLimits = Field(default_factory=BiasLimits)
    compliance: float = Field(default=100e-6, gt=0)
    temperature: TemperatureRange = Field(default_factory=TemperatureRange)
    dew_point_margin: float = Field(default=5.0, ge=0)


#: A Channel Access prefix: upper-case words joined by `:`, ending in `:` (`TS1:`).
PV_PREFIX_PATTERN = r"[A-Z][A-Z0-9_]*(:[A-Z0-9_]+)*:"


class ServerConfig(_Strict):
    """The stand is served by `teststand ioc` under `prefix`; `build()` then talks CA to it."""

    prefix: str = Field(pattern=f"^{PV_PREFIX_PATTERN}$", examples=["TS1:"])
    #: Seconds to wait for the IOC's PVs when connecting.
    connect_timeout: float = Field(default=5.0, gt=0)


class CoolingSafety(_Strict):
    """What the watchdog does to the chiller and the coldbox when it acts: hold both at a safe
    set point above the lab's dew point plus the margin, or stop them (standby, TECs off)."""

    action: Literal["setpoint", "stop"]
    #: °C, for `action: setpoint`: the chiller's and every TEC's set point.
    setpoint: float | None = None

    @model_validator(mode="after")
    def _setpoint_given(self) -> CoolingSafety:
        if (self.action == "setpoint") != (self.setpoint is not None):
            raise ValueError(
                "interlocks.cooling.setpoint: give a set point (°C) with action: setpoint, "
                "and none with action: stop"
            )
        return self


#: s: the default `interlocks.link_timeout` and `heartbeat_timeout`. They are detection times,
#: not safety limits: how long a silence counts as a lost instrument or a hung client. A loaded
#: host stalls a process for seconds (3 s tripped falsely), and a real link's retries take a few.
DETECTION_TIMEOUT = 10.0


class InterlockConfig(_Strict):
    """The limits of the IOC's interlock watchdog. Every limit must be given: none has a default
    but the poll period, the time a paused plan may hold HV (10 min) and the two detection
    timeouts (link and heartbeat, `DETECTION_TIMEOUT`)."""

    #: s between two checks of every condition (at least 2 Hz).
    poll_period: float = Field(default=0.25, gt=0, le=0.5)
    #: K: the watchdog acts when the coldest plate is less than this above the dew point.
    dew_point_margin: float = Field(gt=0)
    #: °C: the highest dew point the lab air reaches; the safe set point stays above it + margin.
    lab_dew_point_max: float
    #: l/min: dry air on with less flow than this is a lost flow.
    min_dry_air_flow: float = Field(gt=0)
    #: °C: a plate, the box air or the chiller bath above this is an over-temperature.
    over_temperature: float
    #: °C: below this the stand is cold: a stopped chiller is then a fault.
    cold_below: float
    #: s: a slot above `limits.compliance` for longer than this trips.
    compliance_trip_time: float = Field(ge=0)
    #: s: no answer from the HV supply, the coldbox or the chiller for longer is a lost link.
    link_timeout: float = Field(default=DETECTION_TIMEOUT, gt=0)
    #: s: the controlling client's heartbeat PV may stay unwritten this long.
    heartbeat_timeout: float = Field(default=DETECTION_TIMEOUT, gt=0)
    #: s without a command after which the chiller stops (or holds its Safe Mode set point) on
    #: its own: its communication watchdog, armed by the IOC, the last line when the IOC dies.
    chiller_timeout: int = Field(gt=0, le=3600)
    #: V: LV goes off once every HV channel reads below this.
    hv_safe_voltage: float = Field(gt=0)
    #: s: how long a paused plan may hold HV up before the watchdog acts.
    paused_hv_hold: float = Field(default=600.0, gt=0)
    cooling: CoolingSafety

    @model_validator(mode="after")
    def _consistent(self) -> InterlockConfig:
        period = self.poll_period
        for key in ("heartbeat_timeout", "link_timeout", "chiller_timeout"):
            if getattr(self, key) <= period:
                raise ValueError(
                    f"interlocks.{key}: {getattr(self, key)} s is not longer than the poll period "
                    f"({period} s, interlocks.poll_period); give a longer timeout"
                )
        floor = self.lab_dew_point_max + self.dew_point_margin
        if self.cooling.setpoint is not None:
            if self.cooling.setpoint < floor:
                raise ValueError(
                    f"interlocks.cooling.setpoint: {self.cooling.setpoint:g} °C is below the lab's "
                    f"dew point plus the margin ({floor:g} °C, interlocks.lab_dew_point_max + "
                    "interlocks.dew_point_margin); give a warmer safe set point"
                )
            if self.cooling.setpoint >= self.over_temperature:
                raise ValueError(
                    f"interlocks.cooling.setpoint: {self.cooling.setpoint} °C is not below "
                    f"interlocks.over_temperature ({self.over_temperature} °C)"
                )
        if self.cold_below >= self.over_temperature:
            raise ValueError(
                f"interlocks.cold_below: {self.cold_below} °C is not below "
                f"interlocks.over_temperature ({self.over_temperature} °C)"
            )
        return self


class CollectorPlacement(BaseModel):
    """A collector of the stand file: the host it runs on and its prefix; the other keys are its
    settings, checked by teststand.collect when it is served (`teststand collector serve
    --stand FILE NAME` on that host)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    host: str = Field(default="localhost", min_length=1)
    prefix: str = Field(min_length=1)

    def settings(self) -> dict[str, Any]:
        return {"prefix": self.prefix, **(self.model_extra or {})}


class StandConfig(_Strict):
    name: str = Field(min_length=1)
    sim: bool = False
    speed: float = Field(default=1.0, gt=0)
    instruments: dict[str, InstrumentConfig] = Field(min_length=1)
    slots: dict[int, SlotConfig] = Field(default_factory=dict)
    limits: Limits = Field(default_factory=Limits)
    #: Where runs are stored: a Tiled server, or the embedded one under a data directory.
    storage: StorageConfig = Field(default_factory=StorageConfig)
    #: Served over Channel Access by `teststand ioc` (None: the devices talk to the instruments).
    server: ServerConfig | None = None
    #: The IOC's interlock watchdog; required by the IOC (`require_interlocks`), not by plans.
    interlocks: InterlockConfig | None = None
    #: Where `teststand monitor` writes the PVs (InfluxDB line protocol).
    monitoring: MonitoringConfig | None = None
    #: ITk module QC: the institution, and which rules the stored IV verdict follows.
    itk: ITkConfig = Field(default_factory=ITkConfig)
    #: Collectors by name, each served on its host (teststand.collect).
    collectors: dict[str, CollectorPlacement] = Field(default_factory=dict)

    def require_interlocks(self) -> InterlockConfig:
        """The interlock limits, or a `ConfigError` naming the missing section."""
        if self.interlocks is None:
            raise ConfigError(
                f"stand {self.name!r}: the `interlocks:` section is missing; the IOC's watchdog "
                "needs every limit (see profile_collection/stand.yaml for one with all keys)"
            )
        return self.interlocks

    @model_validator(mode="after")
    def _names(self) -> StandConfig:
        for name in self.instruments:
            if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or name in RESERVED_NAMES:
                raise ValueError(
                    f"instruments.{name}: an instrument name must be a lower-case identifier "
                    f"(letters, digits, _) and not one of {', '.join(sorted(RESERVED_NAMES))}"
                )
        return self

    @model_validator(mode="after")
    def _slots(self) -> StandConfig:
        used: dict[str, int] = {}
        for number, slot in self.slots.items():
            for role in kinds.SLOT_ROLES:
                ref: ChannelRef | None = getattr(slot, role)
                if ref is None:
                    continue
                self._check_ref(f"slots.{number}.{role}", role, ref)
                key = f"{role}:{ref}"
                if key in used:
                    raise ValueError(
                        f"slots.{number}.{role}: channel {ref} is already used by slot "
                        f"{used[key]}; give each slot its own channel"
                    )
                used[key] = number
        return self

    def _check_ref(self, where: str, role: str, ref: ChannelRef) -> None:
        instrument = self.instruments.get(ref.instrument)
        if instrument is None:
            raise ValueError(
                f"{where}: no instrument named {ref.instrument!r}; "
                f"instruments: {', '.join(self.instruments)}"
            )
        kind = kinds.get(instrument.kind)
        if role not in kind.roles:
            raise ValueError(
                f"{where}: {ref.instrument} is a {instrument.kind}, not one of "
                f"{', '.join(kinds.with_role(role))}"
            )
        channels = kind.channels
        if ref.channel not in channels:
            raise ValueError(
                f"{where}: {instrument.kind} {ref.instrument!r} has no channel {ref.channel}; "
                f"its channels are {channels.start}..{channels.stop - 1}"
            )

    @model_validator(mode="after")
    def _limits_within_hardware(self) -> StandConfig:
        for name, instrument in self.instruments.items():
            hardware = kinds.get(instrument.kind)
            if "hv" not in hardware.roles:
                continue
            assert hardware.max_voltage is not None and hardware.max_current is not None
            for sensor in SensorType:
                bias = self.limits.max_bias.given(sensor)
                if bias is not None and bias > hardware.max_voltage:
                    raise ValueError(
                        f"limits.max_bias.{sensor.value}: {bias} V is above the "
                        f"{hardware.max_voltage:g} V range of {instrument.kind} {name!r}"
                    )
            if self.limits.compliance > hardware.max_current:
                raise ValueError(
                    f"limits.compliance: {self.limits.compliance} A is above the "
                    f"{hardware.max_current:g} A range of {instrument.kind} {name!r}"
                )
        return self

    @model_validator(mode="after")
    def _a_bias_limit_for_every_module(self) -> StandConfig:
        for number, slot in self.slots.items():
            sensor = slot.module.sensor if slot.module is not None else None
            if sensor is not None and self.limits.max_bias.given(sensor) is None:
                raise ValueError(
                    f"limits.max_bias.{sensor.value} is missing, and slot {number} holds a "
                    f"{sensor.value} module ({slot.module.id if slot.module else ''}): give the "
                    f"highest bias (V) for {sensor.value} sensors; a safety limit is never "
                    "taken from a default"
                )
        return self

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
