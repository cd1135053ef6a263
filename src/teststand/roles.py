"""The device roles plans use, as `typing.Protocol`s: an HV channel, a temperature controller
(chiller, coldbox), an LV output (and its supply), a source-measure unit, a pixel detector.

Plans, suspenders and the HV safe state see instruments only through bluesky messages and these
interfaces, never through a device's `movable_logic`, ramp task or protocol client. Two families
implement them: the devices of `teststand.devices`, which talk to the instruments directly, and
the Channel Access client devices that talk to the stand's IOC (served devices); a plan runs
unchanged on either. The protocols are structural: an implementation need not import them.

Read-only members are properties, so an implementation may offer a `SignalRW` where a role asks
for a `SignalR`. Units: volts, amperes, seconds, °C, kelvin (differences), %RH, l/min. Every
protocol is `runtime_checkable`; `Role.check` uses that to refuse a device that lacks a member.

A stand looks instruments up by role (`TestStand.role(COLDBOX)`); the instrument registry
(`teststand.kinds`) says which roles each kind of instrument plays.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, cast, runtime_checkable

from bluesky.protocols import Reading, Status
from ophyd_async.core import SignalR, SignalRW

from teststand.errors import TeststandError

T = TypeVar("T")


class RampFailed(TeststandError):
    """An HV channel did not reach its voltage: it tripped, was switched off, or timed out.
    The IV scan stops that slot alone; any other error (a lost link) ends the plan."""


class RoleMismatch(TeststandError, TypeError):
    """A device given for a role lacks members the role needs."""


class Operation(Status, Awaitable[Any], Protocol):
    """What a device's verbs return: a bluesky `Status` that can also be awaited (ophyd-async's
    `AsyncStatus`, `WatchableAsyncStatus`)."""


@runtime_checkable
class Named(Protocol):
    """What every role shares: a name (bluesky's) and a reading of its signals."""

    @property
    def name(self) -> str: ...

    async def read(self) -> dict[str, Reading[Any]]: ...


@runtime_checkable
class HVStatus(Protocol):
    """An HV channel's status word, decoded."""

    @property
    def flags(self) -> frozenset[str]:
        """Every flag set, as the supply names them (`ON`, `RUP`, `TRIP`, …)."""
        ...

    @property
    def on(self) -> bool: ...

    @property
    def ramping(self) -> bool: ...

    @property
    def faults(self) -> frozenset[str]:
        """The flags that end a ramp with an error (trip, kill, interlock, …)."""
        ...

    @property
    def in_compliance(self) -> bool:
        """At the current limit, or tripped on it: the module draws what the limit allows."""
        ...


@runtime_checkable
class HVChannel(Named, Protocol):
    """One HV channel biasing one module. Voltages are magnitudes (V): the polarity is the
    supply's. `set(v)` is bluesky's Movable (limits checked, ramped, waited for); the IV scan
    checks the whole range once (`check_voltage`) and steps with `ramp_to`, which skips the
    per-move checks."""

    @property
    def voltage(self) -> SignalR[float]: ...  # VMON, V

    @property
    def current(self) -> SignalR[float]: ...  # IMON, A

    @property
    def setpoint(self) -> SignalRW[float]:
        """VSET, V: writing it starts a ramp at the channel's rate; nothing waits."""
        ...

    @property
    def rate_up(self) -> SignalRW[float]: ...  # V/s

    @property
    def rate_down(self) -> SignalRW[float]: ...  # V/s

    @property
    def current_limit(self) -> SignalRW[float]: ...  # The trip current (ISET), A

    @property
    def max_voltage(self) -> SignalRW[float]:
        """The channel's own voltage limit (MAXV), V: the hardware backstop."""
        ...

    @property
    def status(self) -> SignalR[str]:
        """The status flags joined by `|` (`ON|RUP`), `OFF` when none is set."""
        ...

    def set(self, value: float, /, timeout: Any = ...) -> Operation:
        """Ramp to `value` V and wait until it is there; fails with `RampFailed`."""
        ...

    async def stop(self, success: bool = False) -> None:
        """Stop a ramp in progress and hold the present voltage."""
        ...

    def on(self) -> Operation: ...  # Switch the channel on (it ramps to its set point)

    def off(self) -> Operation: ...

    async def check_voltage(self, voltage: float) -> None:
        """Raise (a `TeststandError`) if `voltage` V is outside the channel's limits."""
        ...

    async def ramp_timeout(self, old: float, new: float) -> float:
        """Seconds a ramp from `old` to `new` V may take, from the channel's ramp rates."""
        ...

    async def ramp_to(self, voltage: float, timeout: float | None) -> None:
        """Ramp to `voltage` V (checked beforehand with `check_voltage`) and wait until it is
        within tolerance; `RampFailed` on a trip, a switch-off or after `timeout` s (None: no
        limit)."""
        ...

    async def zero(self) -> None:
        """The safe-state action: cancel any ramp in progress and write 0 V. Returns once
        written; the supply ramps down at its own rate (wait on `voltage`). Works when off."""
        ...

    async def read_status(self) -> HVStatus: ...

    async def set_low_current_range(self, low: bool) -> None:
        """Measure the current in the low range (finer, a tenth of the full scale) or the high
        one; the stand chooses the low range when the compliance fits in it."""
        ...


@runtime_checkable
class HVSupply(Named, Protocol):
    """An HV supply: its channels by number."""

    @property
    def channels(self) -> Mapping[int, HVChannel]: ...


@runtime_checkable
class TemperatureController(Named, Protocol):
    """A chiller or a coldbox: `set(t)` writes the set point (°C) and is done once the
    temperature has settled there; `stop()` holds the present temperature."""

    @property
    def temperature(self) -> SignalR[float]: ...  # °C

    @property
    def setpoint(self) -> SignalRW[float]: ...  # °C; writing it starts no wait

    def set(self, value: float, /, timeout: Any = ...) -> Operation: ...

    async def stop(self, success: bool = False) -> None: ...


@runtime_checkable
class Chiller(TemperatureController, Protocol):
    """A circulating chiller: it runs or stands by; its set point stays inside its limits."""

    @property
    def running(self) -> SignalRW[bool]: ...

    @property
    def lower_limit(self) -> SignalRW[float]: ...  # °C

    @property
    def upper_limit(self) -> SignalRW[float]: ...  # °C

    def start(self) -> Operation: ...  # Start the pump and the temperature control

    def standby(self) -> Operation: ...


@runtime_checkable
class Coldbox(TemperatureController, Protocol):
    """A coldbox: TEC-cooled plates (`temperature` is their mean), the box air's humidity and
    dew point, dry air, and the lid and interlock that cut TEC power."""

    @property
    def tolerance(self) -> SignalRW[float]: ...  # A move is done within this of its target, K

    @property
    def settle_time(self) -> SignalRW[float]:
        """The time a move must stay within `tolerance` to be done, s."""
        ...

    @property
    def tec_power(self) -> SignalRW[bool]: ...

    @property
    def dry_air(self) -> SignalRW[bool]: ...  # The dry-air valve

    @property
    def dry_air_flow(self) -> SignalR[float]: ...  # l/min

    @property
    def relative_humidity(self) -> SignalR[float]: ...  # %

    @property
    def dew_point(self) -> SignalR[float]: ...  # °C, of the box air

    @property
    def dew_point_margin(self) -> SignalR[float]:
        """The coldest plate's temperature above the dew point, K."""
        ...

    @property
    def lid_closed(self) -> SignalR[bool]: ...

    @property
    def interlock_ok(self) -> SignalR[bool]: ...

    async def plate_temperature(self, plate: int) -> float:
        """One plate's temperature, °C (a slot's module temperature)."""
        ...


@runtime_checkable
class LVOutput(Named, Protocol):
    """One output of a low-voltage supply. `on()` arms it: it delivers while its supply is on."""

    @property
    def voltage(self) -> SignalRW[float]: ...  # The set voltage, V

    @property
    def current_limit(self) -> SignalRW[float]: ...  # A

    @property
    def measured_voltage(self) -> SignalR[float]: ...  # V

    @property
    def measured_current(self) -> SignalR[float]: ...  # A

    def on(self) -> Operation: ...

    def off(self) -> Operation: ...


@runtime_checkable
class LVSupply(Named, Protocol):
    """A low-voltage supply: its outputs by number, and `on()`/`off()` for all of them."""

    @property
    def channels(self) -> Mapping[int, LVOutput]: ...

    def on(self) -> Operation: ...  # Switch the supply's output on: armed outputs deliver

    def off(self) -> Operation: ...


@runtime_checkable
class SourceMeter(Named, Protocol):
    """A source-measure unit sourcing voltage and measuring current. `set(v)` sources `v` V
    (signed) and waits for it; `trigger()` takes a reading that `read()` then reports."""

    @property
    def voltage(self) -> SignalR[float]: ...  # The last reading's voltage, V

    @property
    def current(self) -> SignalR[float]: ...  # The last reading's current, A

    @property
    def in_compliance(self) -> SignalR[bool]: ...

    def set(self, value: float, /, timeout: Any = ...) -> Operation: ...

    def trigger(self) -> Operation: ...

    def configure_iv(self, compliance: float) -> Operation:
        """Reset and set up to source voltage and measure current, with `compliance` A; the
        output stays off."""
        ...

    def on(self) -> Operation: ...

    def off(self) -> Operation: ...


@runtime_checkable
class PixelDetector(Named, Protocol):
    """A hybrid pixel detector read out frame by frame (a Timepix3): a bluesky detector
    (stage, prepare, trigger, collect) whose last frame's totals the plans read."""

    @property
    def threshold(self) -> SignalRW[int]: ...  # the global threshold DAC

    @property
    def test_pulse_charge(self) -> SignalRW[int]: ...  # the test pulse amplitude DAC

    @property
    def test_pulses(self) -> SignalRW[int]: ...  # test pulses per frame

    @property
    def test_pulse_region(self) -> SignalRW[str]: ...  # "x0 y0 x1 y1" (ends exclusive) or "OFF"

    @property
    def shutter_time(self) -> SignalRW[float]: ...  # s per frame

    @property
    def trims(self) -> Any: ...  # a Movable taking a 256 x 256 matrix of 4-bit trims [y, x]

    @property
    def last_count_map(self) -> SignalR[Any]: ...  # hits per pixel of the last frame, flat [y, x]

    @property
    def last_hit_count(self) -> SignalR[int]: ...

    @property
    def last_mean_tot(self) -> SignalR[float]: ...  # 25 ns counts

    @property
    def last_rate(self) -> SignalR[float]: ...  # hits/s


@dataclass(frozen=True)
class Role(Generic[T]):
    """A role an instrument plays in a stand, by the name the instrument registry uses."""

    name: str
    protocol: type[Any]
    description: str

    def check(self, device: object) -> T:
        """`device` as this role; `RoleMismatch` if it lacks a member the role needs."""
        if not isinstance(device, self.protocol):
            missing = [
                member for member in sorted(_members(self.protocol)) if not hasattr(device, member)
            ]
            name = getattr(device, "name", type(device).__name__)
            raise RoleMismatch(
                f"{name} cannot serve as {self.description}: it lacks "
                f"{', '.join(missing) or 'members'} of {self.protocol.__name__}"
            )
        return cast(T, device)  # checked against the protocol above


def _members(protocol: type[Any]) -> set[str]:
    members: set[str] = set()
    for cls in protocol.__mro__:
        if cls is not object and getattr(cls, "_is_protocol", False):
            members |= {n for n in vars(cls) if not n.startswith("_")}
    return members


#: Instrument roles (an instrument may play several; a kind's channels serve the slot roles).
HV_SUPPLY: Role[HVSupply] = Role("hv", HVSupply, "an HV supply (its channels bias the slots)")
LV_SUPPLY: Role[LVSupply] = Role("lv", LVSupply, "an LV supply")
SLOT_TEMPERATURE: Role[Coldbox] = Role("temperature", Coldbox, "a slot temperature source")
COLDBOX: Role[Coldbox] = Role("coldbox", Coldbox, "the coldbox")
CHILLER: Role[Chiller] = Role("chiller", Chiller, "a chiller")
SMU: Role[SourceMeter] = Role("smu", SourceMeter, "a source-measure unit")
PIXEL: Role[PixelDetector] = Role("pixel", PixelDetector, "a pixel detector readout")
ROLES: dict[str, Role[Any]] = {
    role.name: role
    for role in (HV_SUPPLY, LV_SUPPLY, SLOT_TEMPERATURE, COLDBOX, CHILLER, SMU, PIXEL)
}

__all__ = [
    "CHILLER",
    "COLDBOX",
    "HV_SUPPLY",
    "LV_SUPPLY",
    "PIXEL",
    "ROLES",
    "SLOT_TEMPERATURE",
    "SMU",
    "Chiller",
    "Coldbox",
    "HVChannel",
    "HVStatus",
    "HVSupply",
    "LVOutput",
    "LVSupply",
    "Named",
    "Operation",
    "PixelDetector",
    "RampFailed",
    "Role",
    "RoleMismatch",
    "SourceMeter",
    "TemperatureController",
]
