"""Stored IV and temperature runs by the IV run contract, for the storage tests: soft-signal
slots whose values a plan sets point by point, with the run metadata of the schema."""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from ophyd_async.core import SignalRW, StandardReadable, StandardReadableFormat, soft_signal_rw

from teststand.callbacks.iv_analysis import normalise_to_20c
from teststand.callbacks.schema import IVKeys, IVSettings, SlotInfo, validate_metadata
from teststand.storage.catalog import Catalog
from teststand.storage.embedded import EmbeddedServer

AREA, STEP, STOP = 15.76, 5.0, 200.0
A, B = "20UPGM22110001", "20UPGM22110002"
C = A + "9"  # A is a substring of C: SQLite's Contains would match both
#: The container of the stored runs: searches of other tests at the root never see them.
CONTAINER = "report-test"


class Slot(StandardReadable):
    """A module slot's readings, named as the stand's slots are (slotN-bias, ...)."""

    def __init__(self, name: str = "") -> None:
        with self.add_children_as_readables(StandardReadableFormat.HINTED_SIGNAL):
            self.bias = soft_signal_rw(float, 0.0, units="V")
            self.leakage_current = soft_signal_rw(float, 0.0, units="A")
            self.temperature = soft_signal_rw(float, 20.0, units="degC")
        super().__init__(name=name)


class States(StandardReadable):
    """The IV plan's per-slot states: iv-slot1_state, iv-slot2_state."""

    def __init__(self, name: str = "") -> None:
        with self.add_children_as_readables(StandardReadableFormat.HINTED_SIGNAL):
            self.slot1_state = soft_signal_rw(str, "measuring")
            self.slot2_state = soft_signal_rw(str, "measuring")
        super().__init__(name=name)


@dataclass(frozen=True)
class Module:
    module_id: str
    max_bias: float  # the slot stops ("done") above this
    leakage: float  # A at 100 V, 20 degC


def current(module: Module, volts: float, temperature: float) -> float:
    """The module's current at `temperature` (its leakage scales with V, given at 20 degC)."""
    at_20c = module.leakage * (0.4 + 0.6 * volts / 100.0)
    return at_20c / normalise_to_20c(1.0, temperature)


def metadata(test: str, stage: str, modules: dict[str, Module]) -> dict[str, Any]:
    slots = {
        n: SlotInfo(module_id=m.module_id, sensor="planar", area_cm2=AREA, max_bias=m.max_bias)
        for n, m in modules.items()
    }
    keys = {
        n: IVKeys(
            bias=f"slot{n}-bias",
            current=f"slot{n}-leakage_current",
            temperature=f"slot{n}-temperature",
            state=f"iv-slot{n}_state",
        )
        for n in modules
    }
    iv = IVSettings(start=0, stop=STOP, step=STEP, settle=0, compliance=1e-4, polarity="-")
    fields: dict[str, Any] = {"iv": iv, "iv_keys": keys} if test == "iv" else {}
    md = validate_metadata(
        stand="test-stand",
        operator="tester",
        test=test,
        stage=stage,
        slots=slots,
        versions={"teststand": "0.1.0", "bluesky": "1.14.6"},
        **fields,
    )
    return md.start_metadata()


def iv_plan(
    slots: dict[str, Slot],
    states: States,
    voltage: SignalRW[float],
    stage: str,
    modules: dict[str, Module],
    temperature: float,
    fail_after: int | None = None,
) -> Generator[Any, Any, str]:
    """An IV scan by the contract: per step the nominal voltage and per slot bias, current,
    temperature and state ("measuring" up to the module's max_bias, then "done")."""

    @bpp.run_decorator(md=metadata("iv", stage, modules))
    def scan() -> Generator[Any, Any, str]:
        steps = int(STOP / STEP) + 1
        for step in range(steps):
            volts = step * STEP
            moves: list[Any] = [voltage, volts]
            for n, module in modules.items():
                measuring = volts <= module.max_bias
                t = temperature + 0.2 * math.sin(step)
                amps = current(module, volts, t) if measuring else 0.0
                moves += [slots[n].bias, -volts if measuring else 0.0]
                moves += [slots[n].leakage_current, -amps, slots[n].temperature, t]
                moves += [getattr(states, f"slot{n}_state"), "measuring" if measuring else "done"]
            yield from bps.mv(*moves)
            yield from bps.trigger_and_read([voltage, *(slots[n] for n in modules), states])
            if fail_after is not None and step == fail_after:
                raise RuntimeError("interrupted on purpose")
        return ""

    return (yield from scan())


def temperature_plan(
    slots: dict[str, Slot], modules: dict[str, Module], temperatures: list[float]
) -> Generator[Any, Any, str]:
    @bpp.run_decorator(md=metadata("temperature", "INITIAL_COLD", modules))
    def ramp() -> Generator[Any, Any, str]:
        for t in temperatures:
            for n in modules:
                yield from bps.mv(slots[n].temperature, t)
            yield from bps.trigger_and_read([slots[n] for n in modules])
        return ""

    return (yield from ramp())


@dataclass
class Stored:
    catalog: Catalog
    server: EmbeddedServer
    uids: dict[str, str]
    live: dict[str, dict[str, Any]]  # IVAnalysis summaries by run uid
    events: dict[str, int]
