"""Set-and-settle moves of slow quantities (a chiller bath, a TEC plate): done once the readback
has stayed within a tolerance of the target for a settle time, not when it first touches it.

Used by the temperature controllers; the tolerance, settle time, rate estimate and timeout margin
are soft configuration signals, so they are recorded with every run and can be changed live.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Protocol, Self, cast

from ophyd_async.core import (
    Device,
    MovableLogic,
    SignalR,
    SignalRW,
    TimeoutCalculator,
    soft_signal_rw,
)

from teststand.errors import TeststandError

SECONDS_PER_MINUTE = 60.0


class SettleTimeout(TeststandError, TimeoutError):
    """A set point was not reached and held within the move's timeout."""


def settle_signals(
    tolerance: float, settle: float, rate: float, margin: float
) -> tuple[SignalRW[float], SignalRW[float], SignalRW[float], SignalRW[float]]:
    """The soft configuration signals of a settling move: tolerance (K), settle time (s),
    rate estimate (K/min) and timeout margin (s), checked here so a bad value fails early."""
    for what, value in (("tolerance", tolerance), ("rate", rate)):
        if not value > 0:
            raise ValueError(f"{what} must be > 0, got {value}")
    for what, value in (("settle", settle), ("margin", margin)):
        if not value >= 0:
            raise ValueError(f"{what} must be >= 0 s, got {value}")
    return (
        soft_signal_rw(float, tolerance, units="K"),
        soft_signal_rw(float, settle, units="s"),
        soft_signal_rw(float, rate, units="K/min"),
        soft_signal_rw(float, margin, units="s"),
    )


class Settling(Protocol):
    """A device whose temperature set point settles: what `SettleLogic.of` needs of it."""

    setpoint: SignalRW[float]
    temperature: SignalR[float]
    tolerance: SignalRW[float]
    settle_time: SignalRW[float]
    rate: SignalRW[float]
    timeout_margin: SignalRW[float]


@dataclass
class SettleLogic(MovableLogic[float]):
    """Write the set point, then wait until |readback − target| <= tolerance has held for the
    settle time (in real seconds); leaving the band restarts the wait.

    The timeout is distance ÷ rate + settle time + margin. Subclasses refuse bad targets in
    `check_move` and abort a move that cannot succeed in `check_progress`.
    """

    device: Device
    tolerance: SignalRW[float]
    settle_time: SignalRW[float]
    rate: SignalRW[float]
    margin: SignalRW[float]
    poll: float = 0.5

    @classmethod
    def of(cls, device: Settling) -> Self:
        """The logic over a device's `setpoint`, `temperature` and settle signals."""
        return cls(
            setpoint=device.setpoint,
            readback=device.temperature,
            device=cast(Device, device),  # every Settling is a Device
            tolerance=device.tolerance,
            settle_time=device.settle_time,
            rate=device.rate,
            margin=device.timeout_margin,
        )

    async def check_progress(self, target: float) -> None:
        """Hook run at every poll, concurrently with the readback: raise if the move must end."""

    async def calculate_timeout(self, old_position: float, new_position: float) -> float:
        rate, settle, margin = await asyncio.gather(
            self.rate.get_value(), self.settle_time.get_value(), self.margin.get_value()
        )
        per_second = max(rate, 1e-6) / SECONDS_PER_MINUTE
        return float(abs(new_position - old_position) / per_second + settle + margin)

    async def move(self, new_position: float, timeout: TimeoutCalculator) -> None:
        tolerance, settle = await asyncio.gather(
            self.tolerance.get_value(), self.settle_time.get_value()
        )
        await self.setpoint.set(new_position)
        budget = timeout()
        deadline = None if budget is None else time.monotonic() + budget
        inside_since: float | None = None
        while True:
            value, _ = await asyncio.gather(
                self.readback.get_value(cached=False), self.check_progress(new_position)
            )
            now = time.monotonic()
            if abs(value - new_position) <= tolerance:
                inside_since = now if inside_since is None else inside_since
                if now - inside_since >= settle:
                    return
            else:
                inside_since = None
            if deadline is not None and now >= deadline:
                raise SettleTimeout(
                    f"{self.device.name}: {new_position} °C not reached and held within "
                    f"±{tolerance} K for {settle} s in the {budget:.1f} s allowed "
                    f"(now {value} °C). The rate estimate is too high or the margin too short: "
                    "lower `rate`, raise `timeout_margin`, or pass an explicit timeout"
                )
            wait = self.poll if deadline is None else min(self.poll, max(deadline - now, 0.0))
            await asyncio.sleep(wait)

    async def stop(self) -> None:
        """Hold the present value."""
        await self.setpoint.set(await self.readback.get_value(cached=False))
