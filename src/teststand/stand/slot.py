"""`ModuleSlot`: one module position. Plans address "slot 3", not "CAEN channel 2".

Built over the role protocols (an HV channel, readings of LV and temperature), so it works the
same over the direct devices and the Channel Access ones.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cached_property

from ophyd_async.core import (
    MovableLogic,
    Reference,
    SignalR,
    StandardMovable,
    StandardReadable,
    TimeoutCalculator,
    soft_signal_r_and_setter,
    soft_signal_rw,
)
from ophyd_async.core import StandardReadableFormat as Format

from teststand.config import ModuleConfig, SensorType
from teststand.devices._backend import client_signal_r
from teststand.errors import TeststandError
from teststand.roles import HVChannel

ReadFloat = Callable[[], Awaitable[float]]


class BiasLimitError(TeststandError, ValueError):
    """A bias outside the slot's limit; refused before anything is written to the supply."""


@dataclass
class SlotBiasLogic(MovableLogic[float]):
    """Bias the slot's module: checked against the slot's limit, ramped by its HV channel."""

    slot: ModuleSlot

    async def check_move(self, new_position: float) -> None:
        slot = self.slot
        limit = await slot.max_bias.get_value()
        if await slot.module_id.get_value() == "":
            raise BiasLimitError(f"{slot.name} holds no module; bias refused")
        if not 0 <= new_position <= limit:
            raise BiasLimitError(
                f"{slot.name}: {new_position} V is outside 0..{limit} V, the limit for "
                f"{await slot.sensor_type.get_value()} sensors in this stand; give a smaller bias "
                "(magnitudes: the supply's polarity applies the sign)"
            )

    async def calculate_timeout(self, old_position: float, new_position: float) -> float:
        return await self.slot.hv_channel.ramp_timeout(old_position, new_position)

    async def move(self, new_position: float, timeout: TimeoutCalculator) -> None:
        await self.setpoint.set(new_position)
        await self.slot.hv_channel.ramp_to(new_position, timeout())

    async def stop(self) -> None:
        await self.slot.hv_channel.stop(success=True)


class ModuleSlot(StandardReadable, StandardMovable[float]):
    """A module position: its HV channel's bias and leakage, its LV, its temperature, its module.

    `set(v)` biases the module (a magnitude in V) through the HV channel after checking the
    slot's limit; `module_id`, `sensor_type`, `sensor_area` and `max_bias` describe the module.
    """

    def __init__(
        self,
        number: int,
        hv: HVChannel,
        module: ModuleConfig | None,
        max_bias: float,
        *,
        lv_voltage: ReadFloat | None = None,
        lv_current: ReadFloat | None = None,
        temperature: ReadFloat | None = None,
        name: str = "",
    ) -> None:
        self.number = number
        self._hv = Reference(hv)
        with self.add_children_as_readables(Format.HINTED_UNCACHED_SIGNAL):
            self.bias = client_signal_r(
                float, hv.voltage.get_value, source=f"slot{number}:bias", units="V", precision=1
            )
        with self.add_children_as_readables(Format.UNCACHED_SIGNAL):
            self.leakage_current = client_signal_r(
                float, hv.current.get_value, source=f"slot{number}:leakage", units="A"
            )
            optional: dict[str, tuple[ReadFloat | None, str]] = {
                "lv_voltage": (lv_voltage, "V"),
                "lv_current": (lv_current, "A"),
                "temperature": (temperature, "degC"),
            }
            for attribute, (read, units) in optional.items():
                if read is not None:
                    signal: SignalR[float] = client_signal_r(
                        float, read, source=f"slot{number}:{attribute}", units=units
                    )
                    setattr(self, attribute, signal)
        with self.add_children_as_readables(Format.CONFIG_SIGNAL):
            self.module_id, _ = soft_signal_r_and_setter(str, module.id if module else "")
            self.sensor_type, _ = soft_signal_r_and_setter(
                SensorType, module.sensor if module else SensorType.PLANAR
            )
            self.sensor_area, _ = soft_signal_r_and_setter(
                float, module.area if module else 0.0, units="cm^2"
            )
            self.max_bias, _ = soft_signal_r_and_setter(float, max_bias, units="V")
        self.bias_setpoint = soft_signal_rw(float, 0.0, units="V")
        super().__init__(name=name)

    async def check_bias(self, voltage: float) -> None:
        """Raise `BiasLimitError` if the slot holds no module or `voltage` V is outside its
        limit; nothing is written."""
        await self.movable_logic.check_move(voltage)

    @property
    def hv_channel(self) -> HVChannel:
        return self._hv()

    @cached_property
    def movable_logic(self) -> SlotBiasLogic:
        return SlotBiasLogic(setpoint=self.bias_setpoint, readback=self.bias, slot=self)
