"""Per-pixel maps from a pixel detector's count maps: S-curves, trims, noisy pixels (numpy).

Maps are 256 x 256 arrays indexed [y, x]; a masked pixel (dead, noisy, never crossing 50 %)
is NaN. Thresholds and noise are in threshold-DAC units.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

Map = npt.NDArray[np.float64]
SHAPE = (256, 256)
TRIM_STEPS = 15  # 4-bit trims: 0..15


@dataclass
class SCurveMaps:
    threshold: Map  # 50 % point of each pixel's S-curve, DAC
    noise: Map  # Gaussian width of the S-curve, DAC
    noisy: npt.NDArray[np.bool_]  # more hits than pulses at some threshold

    def summary(self) -> dict[str, float]:
        good = np.isfinite(self.threshold)
        return {
            "pixels": int(good.sum()),
            "threshold_mean": float(np.nanmean(self.threshold)) if good.any() else float("nan"),
            "threshold_spread": float(np.nanstd(self.threshold)) if good.any() else float("nan"),
            "noise_mean": float(np.nanmean(self.noise)) if good.any() else float("nan"),
            "noisy": int(self.noisy.sum()),
        }


def s_curves(thresholds: Sequence[float], counts: npt.ArrayLike, pulses: int) -> SCurveMaps:
    """Fit each pixel's falling S-curve (hits of `pulses` test pulses per threshold).

    `counts` has shape (len(thresholds), 256, 256). The 50 % point and the width are the mean and
    the standard deviation of the S-curve's derivative (no iterative fit: vectorised, robust).
    """
    steps = np.asarray(thresholds, dtype=np.float64)
    fraction = np.asarray(counts, dtype=np.float64).reshape(len(steps), *SHAPE) / pulses
    noisy: npt.NDArray[np.bool_] = np.asarray((fraction > 1.0).any(axis=0))
    clipped = np.clip(fraction, 0.0, 1.0)
    density = -np.diff(clipped, axis=0)  # (K-1, 256, 256), positive where the curve falls
    middles = ((steps[1:] + steps[:-1]) / 2)[:, None, None]
    weight = density.sum(axis=0)
    seen = (weight > 0.5) & (clipped[0] > 0.5) & (clipped[-1] < 0.5) & ~noisy
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (density * middles).sum(axis=0) / weight
        spread = np.sqrt(np.maximum((density * (middles - mean) ** 2).sum(axis=0) / weight, 0.0))
    return SCurveMaps(np.where(seen, mean, np.nan), np.where(seen, spread, np.nan), noisy)


def equalising_trims(
    low: Map, high: Map, *, low_trim: int = 0, high_trim: int = TRIM_STEPS
) -> tuple[npt.NDArray[np.uint8], float]:
    """Trims that bring every pixel to the common target, from threshold maps taken with all
    trims at `low_trim` and at `high_trim` (linear per pixel); the target is the mean of both
    maps' means. Masked pixels keep the middle trim."""
    target = float(np.nanmean((low + high) / 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        per_trim = (high - low) / (high_trim - low_trim)
        trims = low_trim + (target - low) / per_trim
    middle = (low_trim + high_trim) / 2
    trims = np.where(np.isfinite(trims), trims, middle)
    return np.clip(np.rint(trims), 0, TRIM_STEPS).astype(np.uint8), target


def noisy_pixels(hit_map: npt.ArrayLike, *, sigmas: float = 5.0) -> npt.NDArray[np.bool_]:
    """Pixels with far more hits than the others (Poisson: median + `sigmas` * sqrt(median))."""
    counts = np.asarray(hit_map, dtype=np.float64).reshape(SHAPE)
    median = float(np.median(counts))
    noisy: npt.NDArray[np.bool_] = counts > median + sigmas * np.sqrt(max(median, 1.0)) + 1
    return noisy


def masked(hit_map: npt.ArrayLike, mask: npt.NDArray[np.bool_]) -> Map:
    return np.where(mask, np.nan, np.asarray(hit_map, dtype=np.float64).reshape(SHAPE))


class MapReadout:
    """A readable holding the maps a plan computed, for one event in the run's `maps` stream."""

    def __init__(self, name: str, maps: dict[str, npt.ArrayLike]) -> None:
        self.name = name
        self.parent = None
        self._maps = {f"{name}-{key}": np.asarray(value) for key, value in maps.items()}

    def describe(self) -> dict[str, Any]:
        return {
            key: {
                "source": f"plan:{self.name}",
                "dtype": "array" if value.ndim else "number",
                "shape": list(value.shape),
                "dtype_numpy": value.dtype.str,
            }
            for key, value in self._maps.items()
        }

    def read(self) -> dict[str, Any]:
        stamp = time.time()
        return {key: {"value": value, "timestamp": stamp} for key, value in self._maps.items()}
