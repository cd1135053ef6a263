"""The safe action, the power order of QUALIFICATION.md backwards: HV to 0 V on every channel
(the supplies ramp down at their own ramp-down rate), cooling to its safe state at once (warming
up first is what keeps the plates above the dew point), LV off once every HV channel reads below
`interlocks.hv_safe_voltage`.

HV goes first and alone: one group write (`VSET` 0 on every channel, the supply's all-channels
command) per supply, then each channel's ramp in progress in this process is cancelled and 0 V
written again. A source-measure unit
steps down 10 V a second (QUALIFICATION.md's step ramp), then its output goes off. LV stays on
while HV cannot be shown to be down: an LV cut under bias is what the power order forbids.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from teststand.config import InterlockConfig
from teststand.devices.caen import CaenHV
from teststand.devices.coldbox import ColdBox
from teststand.devices.hmp4040 import HMP4040
from teststand.devices.keithley import Keithley2410
from teststand.devices.lauda import LaudaChiller
from teststand.stand import TestStand

log = logging.getLogger(__name__)

SMU_STEP = 10.0  # V per step
SMU_STEP_WAIT = 1.0  # s
HV_POLL = 0.1  # s between two checks of the ramp-down
HV_WAIT_MARGIN = 10.0  # s beyond the slowest channel's voltage over its ramp-down rate
COOLING_TIMEOUT = 5.0  # s for each chiller's or coldbox's safe state (a silent one fails alone)


@dataclass
class SafeOutcome:
    """When each step happened (monotonic s) and what failed; `hv_unknown` means ERROR."""

    started: float
    first_hv_write: float | None = None
    hv_safe: float | None = None
    lv_off: float | None = None
    cooling_safe: float | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def hv_unknown(self) -> bool:
        return self.hv_safe is None


Step = Callable[[str], None]


async def make_safe(stand: TestStand, limits: InterlockConfig, step: Step) -> SafeOutcome:
    """Bring the stand to its safe state; `step(text)` is told of each step as it completes."""
    outcome = SafeOutcome(started=time.monotonic())
    supplies = [d for d in stand.instruments.values() if isinstance(d, CaenHV)]
    smus = [d for d in stand.instruments.values() if isinstance(d, Keithley2410)]
    await _hv_zero(supplies, outcome, step)
    smu_down = [asyncio.ensure_future(_smu_down(smu)) for smu in smus]
    cooling = asyncio.ensure_future(_cooling_safe(stand, limits, outcome, step))
    try:
        await _wait_hv_below(supplies, limits.hv_safe_voltage, outcome, step)
        for future, smu in zip(smu_down, smus, strict=True):
            await _attempt(outcome, f"{smu.name}: ramp to 0 V and output off", future)
        if outcome.hv_safe is not None:
            await _lv_off(stand, outcome, step)
        else:
            outcome.problems.append("LV left on: HV could not be shown below the safe voltage")
    finally:
        await cooling
    return outcome


async def _attempt(outcome: SafeOutcome, what: str, action: Awaitable[object]) -> bool:
    try:
        await action
    except Exception as exc:
        # a timeout's own text is empty ("chiller: safe state failed: TimeoutError: ")
        text = str(exc) or ("no answer in time" if isinstance(exc, TimeoutError) else "")
        outcome.problems.append(f"{what} failed: {type(exc).__name__}: {text}")
        log.error("safe action: %s failed: %s: %s", what, type(exc).__name__, text)
        return False
    return True


async def _hv_zero(supplies: list[CaenHV], outcome: SafeOutcome, step: Step) -> None:
    """One group write of 0 V per supply first (the fastest), then each channel's own safe-state
    action (`zero`: its ramp in progress cancelled, 0 V written again after it)."""
    results = await asyncio.gather(
        *(_attempt(outcome, f"{s.name}: VSET 0 V", _zero(s)) for s in supplies)
    )
    outcome.first_hv_write = time.monotonic()
    channels = [channel for supply in supplies for channel in supply.channels.values()]
    await asyncio.gather(*(_attempt(outcome, f"{c.name}: 0 V", c.zero()) for c in channels))
    if all(results):
        step(f"HV set to 0 V on every channel of {', '.join(s.name for s in supplies)}")


async def _zero(supply: CaenHV) -> None:
    client = supply.client
    try:
        await client.set("VSET", client.channels, 0)
    except Exception:  # a supply that refuses the group write gets one write per channel
        await asyncio.gather(*(client.set("VSET", ch, 0) for ch in range(client.channels)))


async def _wait_hv_below(
    supplies: list[CaenHV], safe: float, outcome: SafeOutcome, step: Step
) -> None:
    deadline: float | None = None
    while True:
        try:
            readings = await asyncio.gather(*(_volts_and_rates(s) for s in supplies))
            # A set point written after ours (a stopping move holding its voltage) is undone.
            rewrite = [s for s in supplies if any(await s.client.mon_all_floats("VSET"))]
            for supply in rewrite:
                log.warning("safe action: %s had VSET above 0 V again; writing 0 V", supply.name)
                await _zero(supply)
        except Exception as exc:
            outcome.problems.append(f"HV readback failed: {type(exc).__name__}: {exc}")
            return
        highest = max((v for volts, _ in readings for v in volts), default=0.0)
        if highest < safe:
            outcome.hv_safe = time.monotonic()
            step(f"every HV channel below {safe:g} V")
            return
        if deadline is None:
            slowest = max(
                (
                    v / max(rate, 1e-3)
                    for volts, rates in readings
                    for v, rate in zip(volts, rates, strict=True)
                ),
                default=0.0,
            )
            deadline = time.monotonic() + slowest + HV_WAIT_MARGIN
        if time.monotonic() > deadline:
            outcome.problems.append(f"HV still at {highest:.0f} V after its ramp-down time")
            return
        await asyncio.sleep(HV_POLL)


async def _volts_and_rates(supply: CaenHV) -> tuple[list[float], list[float]]:
    client = supply.client
    volts, rates = await asyncio.gather(
        client.mon_all_floats("VMON"), client.mon_all_floats(client.ramp_down_name)
    )
    return [abs(v) for v in volts], rates


async def _smu_down(smu: Keithley2410) -> None:
    client = smu.client
    if not await client.output():
        return
    level = await client.level()
    while abs(level) > SMU_STEP:
        level -= SMU_STEP if level > 0 else -SMU_STEP
        await client.set_level(level)
        await asyncio.sleep(SMU_STEP_WAIT)
    await client.set_level(0.0)
    await client.set_output(False)


async def _lv_off(stand: TestStand, outcome: SafeOutcome, step: Step) -> None:
    supplies = [d for d in stand.instruments.values() if isinstance(d, HMP4040)]
    results = await asyncio.gather(
        *(_attempt(outcome, f"{s.name}: output off", s.client.set_master(False)) for s in supplies)
    )
    if all(results):
        outcome.lv_off = time.monotonic()
        step(f"LV off ({', '.join(s.name for s in supplies) or 'no LV supply'})")


async def _cooling_safe(
    stand: TestStand, limits: InterlockConfig, outcome: SafeOutcome, step: Step
) -> None:
    cooling = limits.cooling
    jobs: list[Awaitable[bool]] = []
    for device in stand.instruments.values():
        what = f"{device.name}: safe state"
        if isinstance(device, LaudaChiller):
            job = _chiller(device, cooling.setpoint)
        elif isinstance(device, ColdBox):
            job = _box(device, cooling.setpoint)
        else:
            continue
        jobs.append(_attempt(outcome, what, asyncio.wait_for(job, COOLING_TIMEOUT)))
    results = await asyncio.gather(*jobs)
    if all(results):
        outcome.cooling_safe = time.monotonic()
        what = "stopped" if cooling.setpoint is None else f"at {cooling.setpoint:g} °C"
        step(f"cooling {what} (interlocks.cooling)")


async def _chiller(chiller: LaudaChiller, setpoint: float | None) -> None:
    client = chiller.client
    if setpoint is None:
        await client.stop()
        return
    await client.set_setpoint(setpoint)
    if not await client.running():
        await client.start()


async def _box(box: ColdBox, setpoint: float | None) -> None:
    client = box.client
    await client.set_valve(True)
    if setpoint is None:
        await client.power(False)
    else:
        await client.set_setpoint(setpoint)


__all__ = ["SafeOutcome", "make_safe"]
