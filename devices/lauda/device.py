"""The ophyd-async device of a Lauda chiller: bath temperature, set point move, pump, cooling."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from functools import cached_property

from ophyd_async.core import (
    AsyncStatus,
    DeviceMock,
    SignalRW,
    StandardMovable,
    StrictEnum,
    callback_on_mock_put,
    default_mock_class,
    set_mock_value,
)
from ophyd_async.core import StandardReadableFormat as Format

from teststand.devices._backend import client_signal_r, client_signal_rw
from teststand.devices._base import InstrumentDevice
from teststand.devices._settle import SettleLogic, settle_signals
from teststand.devices.lauda.client import FAULT_FLAGS, LaudaClient, LaudaError
from teststand.roles import Chiller


class CoolingMode(StrictEnum):
    OFF = "OFF"
    ON = "ON"
    AUTO = "AUTO"


_COOLING_CODES = {CoolingMode.OFF: 0, CoolingMode.ON: 1, CoolingMode.AUTO: 2}


@dataclass
class LaudaSetpointLogic(SettleLogic):
    """Refuses targets outside TiL..TiH or with the chiller in standby; an alarm, or the chiller
    going to standby, ends the move with an error."""

    device: LaudaChiller

    async def check_target(self, new_position: float) -> None:
        """The value's own check (a set point may be written before the chiller starts)."""
        chiller = self.device
        low, high = await asyncio.gather(
            chiller.lower_limit.get_value(), chiller.upper_limit.get_value()
        )
        if not low <= new_position <= high:
            raise LaudaError(
                f"{chiller.name}: {new_position} °C is outside the chiller's set point limits "
                f"{low}..{high} °C (TiL..TiH); choose a target inside them or widen the limits "
                "(lower_limit, upper_limit)"
            )

    async def check_move(self, new_position: float) -> None:
        chiller = self.device
        await self.check_target(new_position)
        if not await chiller.running.get_value():
            raise LaudaError(
                f"{chiller.name} is in standby: start it (`chiller.start()` or "
                "`running.set(True)`) before setting a temperature"
            )

    async def check_progress(self, target: float) -> None:
        chiller = self.device
        running, status = await asyncio.gather(
            chiller.running.get_value(), chiller.status.get_value()
        )
        flags = frozenset(status.split("|"))
        faults = flags & FAULT_FLAGS
        if faults or not running:
            problem = ", ".join(sorted(faults)) or "went to standby"
            raise LaudaError(
                f"{chiller.name}: move to {target} °C failed: {problem}; check the chiller's "
                "display, clear the cause and start it again"
            )


class LaudaChillerMock(DeviceMock["LaudaChiller"]):
    """A dry-run chiller: running, limits wide open, the bath reaches its set point at once."""

    async def connect(self, device: LaudaChiller) -> None:
        set_mock_value(device.running, True)
        set_mock_value(device.status, "OK")
        set_mock_value(device.lower_limit, -90.0)
        set_mock_value(device.upper_limit, 200.0)
        set_mock_value(device.settle_time, 0.0)
        callback_on_mock_put(device.setpoint, lambda v: set_mock_value(device.temperature, v))


@default_mock_class(LaudaChillerMock)
class LaudaChiller(InstrumentDevice[LaudaClient], StandardMovable[float]):
    """A Lauda chiller. `set(t)` writes the set point and is done once the bath has stayed within
    `tolerance` (K) of it for `settle` seconds; the timeout is the distance over `rate` (K/min)
    plus `settle` and `margin` seconds. `stop()` holds the present bath temperature.
    """

    def __init__(
        self,
        url_or_client: str | LaudaClient,
        address: int | None = None,
        name: str = "",
        *,
        tolerance: float = 0.2,
        settle: float = 30.0,
        rate: float = 1.0,
        margin: float = 600.0,
    ) -> None:
        client = self.adopt(
            url_or_client, lambda url: LaudaClient(url, address=address, name=name or "lauda")
        )
        src = client.url

        async def cooling_read() -> CoolingMode:
            code = await client.cooling_mode()
            for mode, value in _COOLING_CODES.items():
                if value == code:
                    return mode
            raise LaudaError(f"{client.name}: unknown cooling mode {code}; expected 0, 1 or 2")

        async def cooling_write(mode: CoolingMode) -> None:
            await client.set_cooling_mode(_COOLING_CODES[CoolingMode(mode)])

        async def running_write(on: bool) -> None:
            await (client.start() if on else client.stop())

        async def status_read() -> str:
            return "|".join(sorted(await client.flags())) or "OK"

        with self.add_children_as_readables(Format.HINTED_SIGNAL):
            self.temperature = client_signal_r(
                float, client.temperature, source=f"{src}#IN_PV_00", units="degC", precision=2
            )
        with self.add_children_as_readables():
            self.setpoint: SignalRW[float] = client_signal_rw(
                float,
                client.setpoint,
                client.set_setpoint,
                source=f"{src}#IN_SP_00",
                units="degC",
                precision=2,
            )
            self.running = client_signal_rw(
                bool, client.running, running_write, source=f"{src}#IN_MODE_02"
            )
            self.status = client_signal_r(str, status_read, source=f"{src}#STAT")
        with self.add_children_as_readables(Format.CONFIG_SIGNAL):
            self.pump_level = client_signal_rw(
                int, client.pump_level, client.set_pump_level, source=f"{src}#IN_SP_01", units="1"
            )
            self.cooling_mode = client_signal_rw(
                CoolingMode, cooling_read, cooling_write, source=f"{src}#IN_SP_02"
            )
            self.upper_limit = client_signal_rw(
                float,
                client.upper_limit,
                client.set_upper_limit,
                source=f"{src}#IN_SP_04",
                units="degC",
            )
            self.lower_limit = client_signal_rw(
                float,
                client.lower_limit,
                client.set_lower_limit,
                source=f"{src}#IN_SP_05",
                units="degC",
            )
            self.model = client_signal_r(str, client.model, source=f"{src}#TYPE")
            self.tolerance, self.settle_time, self.rate, self.timeout_margin = settle_signals(
                tolerance, settle, rate, margin
            )
        super().__init__(name=name)

    @cached_property
    def movable_logic(self) -> LaudaSetpointLogic:
        return LaudaSetpointLogic.of(self)

    @AsyncStatus.wrap
    async def start(self) -> None:
        """Start the pump and the temperature control."""
        await self.client.start()

    @AsyncStatus.wrap
    async def standby(self) -> None:
        """Stop the pump and the control (the chiller's STOP)."""
        await self.client.stop()


def _roles(chiller: LaudaChiller) -> Chiller:
    """The role this module's device plays (checked by the type checker)."""
    return chiller


__all__ = ["CoolingMode", "LaudaChiller"]
