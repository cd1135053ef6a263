"""What a put to a move PV (or to its `…_WRITE` PV) must pass before anything reaches an
instrument.

The device's own check (`movable_logic.check_move`: the slot's bias limit, MAXV, the chiller's
TiL..TiH) and the stand's dew-point rule for temperature set points, as a direct `set()` and
the temperature plans apply them. The drive limits (DRVL/DRVH of the PV) come from the same
place.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from ophyd_async.core import Device, StandardMovable

from teststand.devices.caen import CaenChannel
from teststand.devices.coldbox import ColdBox
from teststand.devices.coldbox.client import SETPOINT_RANGE
from teststand.devices.lauda import LaudaChiller
from teststand.errors import TeststandError
from teststand.stand import ModuleSlot, TestStand


class PutRefused(TeststandError, ValueError):
    """A put refused by the IOC's checks; nothing was written to the instrument."""


async def drive_limits(device: Device) -> tuple[float, float] | None:
    """The range a move of `device` may target (None: no fixed range)."""
    if isinstance(device, ModuleSlot):
        return 0.0, await device.max_bias.get_value()
    if isinstance(device, CaenChannel):
        return 0.0, await device.max_voltage.get_value()
    if isinstance(device, LaudaChiller):
        low, high = await asyncio.gather(
            device.lower_limit.get_value(), device.upper_limit.get_value()
        )
        return low, high
    if isinstance(device, ColdBox):
        return SETPOINT_RANGE
    return None


async def check_dew_point(stand: TestStand, device: Device, target: float) -> None:
    """Refuse a temperature set point less than `limits.dew_point_margin` above the coldbox's
    present dew point (the plans flush first; a bare put does not)."""
    if not isinstance(device, ColdBox | LaudaChiller):
        return
    boxes = [d for d in stand.instruments.values() if isinstance(d, ColdBox)]
    if not boxes:
        return
    margin = stand.config.limits.dew_point_margin
    dew = await boxes[0].dew_point.get_value()
    if target < dew + margin:
        raise PutRefused(
            f"{device.name}: {target} °C refused: the coldbox's dew point is {dew:.1f} °C and "
            f"the stand keeps {margin:g} K above it (limits.dew_point_margin); choose at least "
            f"{dew + margin:.1f} °C, or dry the box first (set_temperature flushes it)"
        )


async def _check_drive_limits(device: Device, target: float) -> None:
    limits = await drive_limits(device)
    if limits is not None and not limits[0] <= target <= limits[1]:
        raise PutRefused(
            f"{device.name}: {target} is outside the drive limits {limits[0]:g}..{limits[1]:g} "
            "(DRVL..DRVH); give a value inside them"
        )


async def check_move(stand: TestStand, device: Device, target: float) -> None:
    """Every check of a direct `device.set(target)`, plus the dew-point rule."""
    await _check_drive_limits(device, target)
    if isinstance(device, StandardMovable):
        await device.movable_logic.check_move(target)
    await check_dew_point(stand, device, target)


async def check_write(stand: TestStand, device: Device, target: float) -> None:
    """The checks of a set point written alone (`…_WRITE`): those of the value (drive limits,
    the device's `check_target` where it has one, else its `check_move`, the dew-point rule),
    not whether the device can follow now (TECs powered, chiller running, SMU output on)."""
    await _check_drive_limits(device, target)
    if isinstance(device, StandardMovable):
        logic = device.movable_logic
        check: Callable[[float], Awaitable[None]] = getattr(logic, "check_target", logic.check_move)
        await check(target)
    await check_dew_point(stand, device, target)
