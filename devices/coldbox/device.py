"""The ophyd-async device of a coldbox: plates, box air, dew point, dry air, TEC set point move.

Every signal but the settle settings comes from one `get Status` line, so reading the whole box
costs one round trip. The dew point is computed here from the box air's temperature and
humidity (Magnus formula, `client.dew_point`) rather than taken from the box's `DP`, so it means
the same with any RH/T sensor; the margin is taken to the coldest plate, where water condenses
first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TypeVar

from ophyd_async.core import (
    DeviceMock,
    SignalRW,
    StandardMovable,
    callback_on_mock_put,
    default_mock_class,
    set_mock_value,
)
from ophyd_async.core import StandardReadableFormat as Format

from teststand.devices._backend import client_signal_r, client_signal_rw
from teststand.devices._base import InstrumentDevice
from teststand.devices._settle import SettleLogic, settle_signals
from teststand.devices.coldbox.client import SETPOINT_RANGE, ColdBoxClient, ColdBoxError, dew_point
from teststand.devices.coldbox.protocol import Status
from teststand.roles import Coldbox

T = TypeVar("T")


def _mean(values: tuple[float, ...]) -> float:
    return sum(values) / len(values)


async def _problem(box: ColdBox) -> str:
    """Why the TECs cannot hold a set point now ("" when they can); one round trip."""
    lid_closed, interlock_ok, powered = await asyncio.gather(
        box.lid_closed.get_value(), box.interlock_ok.get_value(), box.tec_power.get_value()
    )
    if not lid_closed:
        return "the lid is open"
    if not interlock_ok:
        return "the interlock is tripped"
    if not powered:
        return "TEC power is off"
    return ""


@dataclass
class TecSetpointLogic(SettleLogic):
    """Refuses targets outside the box's range or with the TECs unable to follow; the lid opening,
    the interlock tripping or the TECs switching off end the move with an error."""

    device: ColdBox

    async def check_target(self, new_position: float) -> None:
        """The value's own check (a set point may be written before the TECs are powered)."""
        low, high = SETPOINT_RANGE
        if not low <= new_position <= high:
            raise ColdBoxError(
                f"{self.device.name}: {new_position} °C is outside the TEC range "
                f"{low:g}..{high:g} °C; choose a target inside it"
            )

    async def check_move(self, new_position: float) -> None:
        await self.check_target(new_position)
        problem = await _problem(self.device)
        if problem:
            raise ColdBoxError(
                f"{self.device.name}: cannot set {new_position} °C: {problem}; close the lid, "
                "clear the interlock and power the TECs on (`tec_power.set(True)`) first"
            )

    async def check_progress(self, target: float) -> None:
        problem = await _problem(self.device)
        if problem:
            raise ColdBoxError(f"{self.device.name}: move to {target} °C failed: {problem}")


class ColdBoxMock(DeviceMock["ColdBox"]):
    """A dry-run box: lid closed, TECs on, plates reach their set point at once."""

    async def connect(self, device: ColdBox) -> None:
        set_mock_value(device.lid_closed, True)
        set_mock_value(device.tec_power, True)
        set_mock_value(device.interlock_ok, True)
        set_mock_value(device.settle_time, 0.0)
        callback_on_mock_put(device.setpoint, lambda v: set_mock_value(device.temperature, v))


@default_mock_class(ColdBoxMock)
class ColdBox(InstrumentDevice[ColdBoxClient], StandardMovable[float]):
    """A coldbox. `temperature` is the mean plate temperature; `set(t)` moves every TEC's set
    point and is done once the mean plate has stayed within `tolerance` (K) for `settle` s.
    The timeout is the distance over `rate` (K/min) plus `settle` and `margin` seconds.
    """

    def __init__(
        self,
        url_or_client: str | ColdBoxClient,
        name: str = "",
        *,
        tolerance: float = 0.2,
        settle: float = 30.0,
        rate: float = 10.0,
        margin: float = 300.0,
    ) -> None:
        client = self.adopt(url_or_client, lambda url: ColdBoxClient(url, name=name or "coldbox"))
        src = f"{client.url}#Status"

        def field(pick: Callable[[Status], T]) -> Callable[[], Awaitable[T]]:
            async def read() -> T:
                return pick(await client.status())

            return read

        def dew(status: Status) -> float:
            return dew_point(status.air, status.humidity)

        def valve_write(on: bool) -> Awaitable[None]:
            return client.set_valve(on)

        def power_write(on: bool) -> Awaitable[None]:
            return client.power(on)

        with self.add_children_as_readables(Format.HINTED_SIGNAL):
            self.temperature = client_signal_r(
                float, field(lambda s: _mean(s.plates)), source=src, units="degC", precision=2
            )
        with self.add_children_as_readables():
            self.setpoint: SignalRW[float] = client_signal_rw(
                float,
                field(lambda s: _mean(s.setpoints)),
                client.set_setpoint,
                source=f"{client.url}#Temp_Set",
                units="degC",
                precision=2,
            )
            self.air_temperature = client_signal_r(
                float, field(lambda s: s.air), source=src, units="degC", precision=2
            )
            self.water_temperature = client_signal_r(
                float, field(lambda s: s.water), source=src, units="degC", precision=2
            )
            self.relative_humidity = client_signal_r(
                float, field(lambda s: s.humidity), source=src, units="%", precision=2
            )
            self.dew_point = client_signal_r(
                float, field(dew), source=src, units="degC", precision=2
            )
            self.dew_point_margin = client_signal_r(
                float, field(lambda s: min(s.plates) - dew(s)), source=src, units="K", precision=2
            )
            self.lid_closed = client_signal_r(bool, field(lambda s: s.lid_closed), source=src)
            self.interlock_ok = client_signal_r(bool, field(lambda s: s.interlock_ok), source=src)
            self.dry_air_flow = client_signal_r(
                float, field(lambda s: s.flow), source=src, units="l/min", precision=1
            )
            self.dry_air = client_signal_rw(
                bool, field(lambda s: s.valve), valve_write, source=f"{client.url}#valve0"
            )
            # True when every TEC is powered; writing powers all of them on or off.
            self.tec_power = client_signal_rw(
                bool, field(lambda s: all(s.power)), power_write, source=f"{client.url}#Power"
            )
        with self.add_children_as_readables(Format.CONFIG_SIGNAL):
            self.tolerance, self.settle_time, self.rate, self.timeout_margin = settle_signals(
                tolerance, settle, rate, margin
            )
        super().__init__(name=name)

    @cached_property
    def movable_logic(self) -> TecSetpointLogic:
        return TecSetpointLogic.of(self)

    async def plate_temperature(self, plate: int) -> float:
        """Plate `plate`'s temperature (1..8), °C."""
        return await self.client.plate_temperature(plate)


def _roles(box: ColdBox) -> Coldbox:
    """The role this module's device plays (checked by the type checker)."""
    return box


__all__ = ["ColdBox"]
