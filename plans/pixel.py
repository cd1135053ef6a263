"""Pixel-detector plans: threshold scan, trim equalisation, source scan, bias scan with detector.

The detector is the stand's instrument playing the `pixel` role (`teststand.roles.PixelDetector`);
`slot` is the slot whose module it reads, so every run carries that module's id. Arguments are
checked before anything moves. Each run ends with one event in its `maps` stream holding the
per-pixel maps (256 x 256, [y, x], masked pixels NaN) and their summary.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import bluesky.plan_stubs as bps
import numpy as np
import numpy.typing as npt
from bluesky import Msg
from bluesky import preprocessors as bpp
from bluesky.utils import MsgGenerator

from teststand.plans.common import (
    PlanArgumentError,
    check_bias,
    hv_safe,
    module_slots,
    ramp,
    run_metadata,
    switch_on,
)
from teststand.plans.pixel_maps import (
    TRIM_STEPS,
    MapReadout,
    equalising_trims,
    masked,
    noisy_pixels,
    s_curves,
)
from teststand.roles import PIXEL, PixelDetector
from teststand.stand import ModuleSlot, TestStand

DAC_RANGE = range(0, 512)  # Vthreshold_fine and VTP_fine of a Timepix3
#: Threshold DAC steps when a plan is given none (`thresholds=None`, as the queue server sends).
SCAN_STEPS = range(110, 192, 2)
TRIM_SCAN_STEPS = range(90, 212, 3)


def _detector(stand: TestStand, name: str | None) -> PixelDetector:
    found = stand.role(PIXEL)
    if name is not None and name not in found:
        raise PlanArgumentError(f"no pixel detector {name!r}; this stand has {sorted(found)}")
    if name is None and len(found) != 1:
        raise PlanArgumentError(
            f"name the pixel detector (detector=...): this stand has {sorted(found) or 'none'}"
        )
    return found[name] if name is not None else next(iter(found.values()))


def _slot(stand: TestStand, slot: int) -> ModuleSlot:
    if not isinstance(slot, int):
        raise PlanArgumentError(f"slot {slot!r}: give the one slot number the detector reads")
    return module_slots(stand, slot)[0]


def _check_thresholds(thresholds: Sequence[int]) -> list[int]:
    steps = [int(t) for t in thresholds]
    if len(steps) < 3 or any(b <= a for a, b in pairwise(steps)):
        raise PlanArgumentError("thresholds: give at least 3 increasing DAC values")
    if steps[0] not in DAC_RANGE or steps[-1] not in DAC_RANGE:
        raise PlanArgumentError(f"thresholds {steps[0]}..{steps[-1]}: the DAC takes 0..511")
    return steps


def _check_pulses(pulses: int, charge: int, region: str) -> None:
    if not 1 <= pulses <= 10000:
        raise PlanArgumentError(f"pulses {pulses}: give 1..10000 test pulses per threshold")
    if charge not in DAC_RANGE:
        raise PlanArgumentError(f"charge {charge}: the test-pulse DAC (VTP_fine) takes 0..511")
    words = region.split()
    if len(words) != 4 or not all(w.isdigit() for w in words):
        raise PlanArgumentError(f"region {region!r}: give 'x0 y0 x1 y1' (ends exclusive)")
    x0, y0, x1, y1 = map(int, words)
    if not (x0 < x1 <= 256 and y0 < y1 <= 256):
        raise PlanArgumentError(f"region {region!r}: need x0 < x1 <= 256 and y0 < y1 <= 256")


def _check_pulsed_scan(
    thresholds: Sequence[int], pulses: int, charge: int, region: str, shutter: float
) -> list[int]:
    steps = _check_thresholds(thresholds)
    _check_pulses(pulses, charge, region)
    _check_time("shutter", shutter)
    return steps


def _check_time(name: str, seconds: float) -> None:
    if not 1e-6 <= seconds <= 3600:
        raise PlanArgumentError(f"{name} {seconds} s: give 1 µs .. 3600 s")


def _save_maps(name: str, maps: dict[str, Any]) -> MsgGenerator[None]:
    yield Msg("create", None, name="maps")
    yield Msg("read", MapReadout(name, maps))
    yield Msg("save")


def _scan_counts(
    detector: PixelDetector, thresholds: Sequence[int], stream: str
) -> MsgGenerator[npt.NDArray[np.uint32]]:
    """Counts per pixel at each threshold, shape (len(thresholds), 256, 256)."""
    counts = []
    for threshold in thresholds:
        yield Msg("checkpoint")
        yield from bps.mv(detector.threshold, threshold)
        yield from bps.trigger_and_read([detector], name=stream)
        counts.append(np.asarray((yield from bps.rd(detector.last_count_map))).reshape(256, 256))
    return np.stack(counts)


def _pulsing(
    detector: PixelDetector, pulses: int, charge: int, region: str, shutter: float
) -> MsgGenerator[None]:
    yield from bps.mv(detector.test_pulse_charge, charge, detector.shutter_time, shutter)
    yield from bps.mv(detector.test_pulses, pulses, detector.test_pulse_region, region)


def _pulses_off(detector: PixelDetector) -> MsgGenerator[None]:
    yield from bps.mv(detector.test_pulses, 0)


def _run(
    stand: TestStand, slot: ModuleSlot, test: Any, detector: PixelDetector, body: MsgGenerator[Any],
    stage: str, operator: str | None, md: dict[str, Any] | None, settings: dict[str, Any],
) -> MsgGenerator[str]:  # fmt: skip
    metadata = run_metadata(
        stand, [slot], test, stage, operator, md, pixel={"detector": detector.name, **settings}
    )

    def inner() -> MsgGenerator[str]:
        uid = yield Msg("open_run", **metadata)
        yield from body
        yield Msg("close_run")
        return str(uid)

    uid: str = yield from bpp.stage_wrapper(inner(), [detector])
    return uid


def threshold_scan(
    stand: TestStand,
    slot: int,
    thresholds: Sequence[int] | None = None,
    *,
    detector: str | None = None,
    pulses: int = 20,
    charge: int = 150,
    region: str = "0 0 256 256",
    shutter: float = 0.01,
    stage: str = "TEST",
    operator: str | None = None,
    md: dict[str, Any] | None = None,
) -> MsgGenerator[str]:
    """Per-pixel S-curves: `pulses` test pulses of `charge` (VTP_fine DAC) into `region` at each
    threshold DAC (`thresholds`, default `SCAN_STEPS`: 110..190 in steps of 2); the `maps` stream
    holds the threshold and noise maps (DAC). Returns the uid."""
    chosen, det = _slot(stand, slot), _detector(stand, detector)
    given = SCAN_STEPS if thresholds is None else thresholds
    steps = _check_pulsed_scan(given, pulses, charge, region, shutter)

    def body() -> MsgGenerator[None]:
        yield from _pulsing(det, pulses, charge, region, shutter)
        counts = yield from _scan_counts(det, steps, "primary")
        maps = s_curves(steps, counts, pulses)
        summary = maps.summary()
        yield from _save_maps(
            "threshold_scan",
            {"threshold": maps.threshold, "noise": maps.noise, "noisy": maps.noisy, **summary},
        )

    settings = {"thresholds": steps, "pulses": pulses, "charge": charge, "region": region}
    plan = bpp.finalize_wrapper(body(), _pulses_off(det))
    return (
        yield from _run(stand, chosen, "threshold_scan", det, plan, stage, operator, md, settings)
    )


def trim_equalisation(
    stand: TestStand,
    slot: int,
    thresholds: Sequence[int] | None = None,
    *,
    detector: str | None = None,
    pulses: int = 20,
    charge: int = 150,
    region: str = "0 0 256 256",
    shutter: float = 0.01,
    stage: str = "TEST",
    operator: str | None = None,
    md: dict[str, Any] | None = None,
) -> MsgGenerator[str]:
    """Trims that flatten the threshold map: S-curves with every trim at 0 and at 15, a linear
    per-pixel trim to the common target, loaded and checked with a third scan. The `maps`
    stream holds the trims and the threshold maps before (trim 8 estimate) and after.
    `thresholds` default `TRIM_SCAN_STEPS` (90..209 in steps of 3)."""
    chosen, det = _slot(stand, slot), _detector(stand, detector)
    given = TRIM_SCAN_STEPS if thresholds is None else thresholds
    steps = _check_pulsed_scan(given, pulses, charge, region, shutter)

    def body() -> MsgGenerator[None]:
        yield from _pulsing(det, pulses, charge, region, shutter)
        found = {}
        for trim in (0, TRIM_STEPS):
            yield from bps.mv(det.trims, np.full((256, 256), trim, np.uint8))
            counts = yield from _scan_counts(det, steps, f"trim{trim}")
            found[trim] = s_curves(steps, counts, pulses)
        trims, target = equalising_trims(found[0].threshold, found[TRIM_STEPS].threshold)
        yield from bps.mv(det.trims, trims)
        after = s_curves(steps, (yield from _scan_counts(det, steps, "trimmed")), pulses)
        before = (found[0].threshold + found[TRIM_STEPS].threshold) / 2
        yield from _save_maps("trim_equalisation", {
            "trims": trims, "threshold_untrimmed": before, "threshold": after.threshold,
            "noise": after.noise, "target": target,
            "spread_untrimmed": float(np.nanstd(before)),
            "spread": after.summary()["threshold_spread"],
        })  # fmt: skip

    settings = {"thresholds": steps, "pulses": pulses, "charge": charge, "region": region}
    plan = bpp.finalize_wrapper(body(), _pulses_off(det))
    return (
        yield from _run(
            stand, chosen, "trim_equalisation", det, plan, stage, operator, md, settings
        )
    )


def source_scan(
    stand: TestStand,
    slot: int,
    frames: int = 10,
    frame_time: float = 1.0,
    *,
    detector: str | None = None,
    stage: str = "TEST",
    operator: str | None = None,
    md: dict[str, Any] | None = None,
) -> MsgGenerator[str]:
    """Time-based acquisition: `frames` frames of `frame_time` s with the source in place; the
    `maps` stream holds the hit map (noisy pixels masked), the noisy-pixel mask and the rate."""
    chosen, det = _slot(stand, slot), _detector(stand, detector)
    if not 1 <= frames <= 100000:
        raise PlanArgumentError(f"frames {frames}: give 1..100000")
    _check_time("frame_time", frame_time)

    def body() -> MsgGenerator[None]:
        yield from bps.mv(det.shutter_time, frame_time)
        total = np.zeros((256, 256), np.int64)
        for _ in range(frames):
            yield Msg("checkpoint")
            yield from bps.trigger_and_read([det])
            total += np.asarray((yield from bps.rd(det.last_count_map))).reshape(256, 256)
        noisy = noisy_pixels(total)
        yield from _save_maps("source_scan", {
            "hit_map": masked(total, noisy), "noisy": noisy, "hits": int(total[~noisy].sum()),
            "rate": float(total[~noisy].sum() / (frames * frame_time)),
        })  # fmt: skip

    settings = {"frames": frames, "frame_time": frame_time}
    return (
        yield from _run(stand, chosen, "source_scan", det, body(), stage, operator, md, settings)
    )


def bias_scan_with_detector(
    stand: TestStand,
    slot: int,
    voltages: Sequence[float],
    frame_time: float = 1.0,
    settle: float = 1.0,
    *,
    detector: str | None = None,
    stage: str = "TEST",
    operator: str | None = None,
    md: dict[str, Any] | None = None,
) -> MsgGenerator[str]:
    """HV steps through the slot's channel with a frame at each (hit rate and mean ToT per step,
    also in the `maps` stream as arrays); the slot returns to 0 V on every exit path."""
    chosen, det = _slot(stand, slot), _detector(stand, detector)
    steps = [float(v) for v in voltages]
    if not steps:
        raise PlanArgumentError("voltages: give at least one bias, V (magnitudes)")
    check_bias(stand, [chosen], max(steps))
    if min(steps) < 0:
        check_bias(stand, [chosen], min(steps))  # refuses negatives with its message
    _check_time("frame_time", frame_time)
    if settle < 0:
        raise PlanArgumentError(f"settle {settle} s: give a settle time >= 0 s")

    def body() -> MsgGenerator[None]:
        yield from bps.mv(det.shutter_time, frame_time)
        yield from switch_on([chosen])
        rates, tots = [], []
        for voltage in steps:
            yield Msg("checkpoint")
            yield from ramp([chosen], voltage)
            if settle:
                yield Msg("sleep", None, settle)
            yield from bps.trigger_and_read([det, chosen])
            rates.append((yield from bps.rd(det.last_rate)))
            tots.append((yield from bps.rd(det.last_mean_tot)))
        yield from _save_maps("bias_scan", {
            "voltage": np.array(steps), "rate": np.array(rates), "mean_tot": np.array(tots),
        })  # fmt: skip

    settings = {"voltages": steps, "frame_time": frame_time, "settle": settle}
    plan = hv_safe(body(), [chosen])
    return (
        yield from _run(
            stand, chosen, "bias_scan_detector", det, plan, stage, operator, md, settings
        )
    )
