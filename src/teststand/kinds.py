"""The instrument registry: every kind of instrument a stand file may name, in one place.

An entry says how to build the kind's device, which roles it plays (`teststand.roles`), its
channel numbers and its ranges; its simulator is the `teststand.sim` class of the same `kind`.
The stand file's validation, the stand builder and the tour read this registry; adding an
instrument is its device folder, its simulator, their tests and one `register(...)` (see
devices/README.md).

Devices are named by import path (`"teststand.devices.caen:CaenHV"`) and imported when a stand
is built, so the registry sits below the drivers in the layers; a test or a site package may
register a class directly.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from teststand.errors import TeststandError

#: Roles whose channels a slot refers to (`slots.N.hv: INSTRUMENT:CHANNEL`).
SLOT_ROLES = ("hv", "lv", "temperature")
#: Every role an instrument may play (`teststand.roles.ROLES`).
INSTRUMENT_ROLES = frozenset({*SLOT_ROLES, "coldbox", "chiller", "smu", "pixel"})


class UnknownInstrumentKind(TeststandError, KeyError):
    """A kind no entry of the registry has; the message lists the known kinds."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class RegistryError(TeststandError, ValueError):
    """A registry entry that cannot be used (a bad role, a taken name, an unimportable class)."""


@dataclass(frozen=True)
class InstrumentKind:
    """One kind of instrument, by the name a stand file's `kind:` uses.

    `device` (or the import path `"module:attribute"` of it) is called as
    `device(url, name=..., **options, **settings)`, settings from the stand file. The simulator
    is the `teststand.sim.SimInstrument` subclass whose `kind` is this kind's name.
    """

    name: str
    device: str | Callable[..., Any]
    roles: frozenset[str]
    #: Channel numbers a slot may refer to (empty: the instrument has no addressable channels).
    channels: range = range(0)
    max_voltage: float | None = None  # V
    max_current: float | None = None  # A
    #: Set point range of a temperature controller, °C.
    setpoint_range: tuple[float, float] | None = None
    #: Fixed device options of this kind (a CAEN dialect), before the stand file's settings.
    options: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    #: The setting that says where the device writes its data files: given the stand file's
    #: `storage.detector_dir` (by default `storage.data_dir/detector`, which Tiled reads in
    #: place) when the instrument's settings name no other place.
    data_dir_setting: str | None = None
    #: `exercise(link, say)` of `teststand demo --transport` (or its import path), if any.
    tour: str | Callable[..., Any] | None = None

    def __post_init__(self) -> None:
        unknown = self.roles - INSTRUMENT_ROLES
        if unknown:
            raise RegistryError(
                f"instrument kind {self.name!r}: unknown role(s) {', '.join(sorted(unknown))}; "
                f"roles: {', '.join(sorted(INSTRUMENT_ROLES))}"
            )
        if self.roles & set(SLOT_ROLES) and not self.channels:
            raise RegistryError(f"instrument kind {self.name!r}: a slot role needs channels")
        if "hv" in self.roles and (self.max_voltage is None or self.max_current is None):
            raise RegistryError(
                f"instrument kind {self.name!r}: an HV supply needs max_voltage and max_current"
            )

    def device_factory(self) -> Callable[..., Any]:
        return _resolve(self.device, self.name)

    def tour_exerciser(self) -> Callable[..., Any] | None:
        return None if self.tour is None else _resolve(self.tour, self.name)

    def make_device(self, url: str, name: str, settings: Mapping[str, Any]) -> Any:
        """The kind's device for the instrument `name` at `url`."""
        return self.device_factory()(url, name=name, **{**self.options, **settings})


def _resolve(target: str | Callable[..., Any], kind: str) -> Callable[..., Any]:
    """`target`, or what its import path `module:attribute` names."""
    if not isinstance(target, str):
        return target
    module, _, attribute = target.partition(":")
    try:
        found: Callable[..., Any] = getattr(importlib.import_module(module), attribute)
        return found
    except (ImportError, AttributeError) as exc:
        raise RegistryError(f"instrument kind {kind!r}: cannot import {target}: {exc}") from exc


_KINDS: dict[str, InstrumentKind] = {}
#: The registered kinds by name (read-only view; `register` adds to it).
KINDS: Mapping[str, InstrumentKind] = MappingProxyType(_KINDS)


def register(kind: InstrumentKind, *, replace: bool = False) -> InstrumentKind:
    """Add `kind` to the registry (refused if its name is taken, unless `replace`)."""
    if kind.name in _KINDS and not replace:
        raise RegistryError(f"instrument kind {kind.name!r} is already registered")
    _KINDS[kind.name] = kind
    return kind


def unregister(name: str) -> None:
    """Remove a kind (a test's toy instrument)."""
    get(name)
    del _KINDS[name]


def get(name: str) -> InstrumentKind:
    """The registered kind `name`; `UnknownInstrumentKind` names the known ones."""
    try:
        return _KINDS[name]
    except KeyError:
        raise UnknownInstrumentKind(
            f"unknown instrument kind {name!r}; known kinds: {', '.join(known())}. Register a "
            "new kind with teststand.kinds.register (see devices/README.md)"
        ) from None


def known() -> list[str]:
    return sorted(_KINDS)


def with_role(role: str) -> list[str]:
    """The kinds that play `role`, by name."""
    return [name for name, kind in sorted(_KINDS.items()) if role in kind.roles]


# ---- the stand's instruments ----

_CAEN_ROLES = frozenset({"hv"})
register(
    InstrumentKind(
        "caen-dt8033",
        device="teststand.devices.caen:CaenHV",
        roles=_CAEN_ROLES,
        channels=range(0, 8),
        max_voltage=4000.0,
        max_current=3e-3,
        options={"dialect": "803x"},
        description="CAEN DT8033 8-channel HV supply",
        tour="teststand.devices.caen.tour:exercise",
    )
)
register(
    InstrumentKind(
        "caen-n1470",
        device="teststand.devices.caen:CaenHV",
        roles=_CAEN_ROLES,
        channels=range(0, 4),
        max_voltage=8000.0,
        max_current=3e-3,
        options={"dialect": "14xx"},
        description="CAEN N1470 4-channel HV supply",
    )
)
register(
    InstrumentKind(
        "hmp4040",
        device="teststand.devices.hmp4040:HMP4040",
        roles=frozenset({"lv"}),
        channels=range(1, 5),
        description="R&S HMP4040 4-channel LV supply",
        tour="teststand.devices.hmp4040.tour:exercise",
    )
)
register(
    InstrumentKind(
        "coldbox",
        device="teststand.devices.coldbox:ColdBox",
        roles=frozenset({"temperature", "coldbox"}),
        channels=range(1, 9),
        setpoint_range=(-40.0, 40.0),
        description="coldbox with 8 TEC plates",
        tour="teststand.devices.coldbox.tour:exercise",
    )
)
register(
    InstrumentKind(
        "keithley2410",
        device="teststand.devices.keithley:Keithley2410",
        roles=frozenset({"smu"}),
        channels=range(0, 1),
        max_voltage=1100.0,
        max_current=1.05,
        description="Keithley 2400-series source-measure unit",
        tour="teststand.devices.keithley.tour:exercise",
    )
)
register(
    InstrumentKind(
        "lauda",
        device="teststand.devices.lauda:LaudaChiller",
        roles=frozenset({"chiller"}),
        description="Lauda chiller",
        tour="teststand.devices.lauda.tour:exercise",
    )
)
register(
    InstrumentKind(
        "timepix3",
        device="teststand.devices.timepix3:Timepix3",
        roles=frozenset({"pixel"}),
        data_dir_setting="data_dir",
        description="Timepix3 pixel detector on a SPIDR/Katherine-style readout",
    )
)
