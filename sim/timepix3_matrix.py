"""The simulated Timepix3 pixel matrix: per-pixel thresholds and noise, trims, sources, hits.

Charges are in electrons. A pixel fires when the charge it collects plus Gaussian noise
(sigma `noise[p]`) exceeds its threshold

    threshold[p] = THL_ELECTRONS * Vthreshold_fine + offset[p] + TRIM_ELECTRONS * (trim[p] - 8)

(`offset` is the untrimmed dispersion, Gaussian). The ToT counts the collected charge,
`ELECTRONS_PER_TOT` per 25 ns count, so a cluster's ToT sums to its deposit. The bias voltage
scales the collected charge by sqrt(V / depletion_voltage), capped at 1 (a depletion curve).
"""

from __future__ import annotations

import math
import random
from array import array
from collections.abc import Callable
from dataclasses import dataclass

PIXELS = 256 * 256
THL_ELECTRONS = 10.0  # e- per Vthreshold_fine step
TRIM_ELECTRONS = 25.0  # e- per trim step (4-bit trim, 8 is the middle)
TP_ELECTRONS = 10.0  # e- per VTP_fine step of the test pulse
ELECTRONS_PER_TOT = 50.0  # e- per ToT count (25 ns)
XRAY_ELECTRONS = 2200.0  # an 8 keV photon in silicon
BETA_ELECTRONS = 22000.0  # most probable deposit of a MIP in 300 um of silicon
NOISY_RATE = 2000.0  # hits/s of a noisy pixel

#: A hit: (time in s since the readout's time zero, x, y, ToT in 25 ns counts).
Hit = tuple[float, int, int, int]


@dataclass
class Source:
    """What irradiates the sensor: `none`, `flat` (X-ray tube, hits/s) or `beta` (clusters/s)."""

    kind: str = "none"
    rate: float = 0.0


class PixelMatrix:
    """Per-pixel state of one chip and the hits it makes over an interval of simulated time."""

    def __init__(
        self,
        rng: random.Random,
        *,
        dispersion: float = 80.0,
        noise: float = 80.0,
        dead: int = 0,
        noisy: int = 0,
        depletion_voltage: float = 60.0,
    ) -> None:
        self.rng = rng
        self.offset = array("d", (rng.gauss(0.0, dispersion) for _ in range(PIXELS)))
        self.noise = array("d", (max(20.0, rng.gauss(noise, noise / 10)) for _ in range(PIXELS)))
        self.trims = bytearray([8] * PIXELS)
        chosen = rng.sample(range(PIXELS), dead + noisy)
        self.dead = frozenset(chosen[:dead])
        self.noisy = tuple(chosen[dead:])
        self.depletion_voltage = depletion_voltage
        self.bias: Callable[[], float] = lambda: 2 * depletion_voltage
        self.threshold_dac = 100
        self.tp_charge_dac = 200
        self.tp_pulses = 0
        self.tp_region: tuple[int, int, int, int] | None = None  # x0, y0, x1, y1 (exclusive)
        self.source = Source()

    # -- physics --------------------------------------------------------------------------------
    def collection(self) -> float:
        """Fraction of a deposit collected at the present bias (0 … 1)."""
        return min(1.0, math.sqrt(max(self.bias(), 0.0) / self.depletion_voltage))

    def threshold(self, pixel: int) -> float:
        trim = self.trims[pixel] - 8
        return THL_ELECTRONS * self.threshold_dac + self.offset[pixel] + TRIM_ELECTRONS * trim

    def fires(self, pixel: int, charge: float) -> bool:
        if pixel in self.dead:
            return False
        return charge + self.rng.gauss(0.0, self.noise[pixel]) > self.threshold(pixel)

    @staticmethod
    def tot(charge: float) -> int:
        return max(1, min(1023, round(charge / ELECTRONS_PER_TOT)))

    # -- hits over [start, end) s ---------------------------------------------------------------
    def hits(self, start: float, end: float, frame_start: float, shutter: float) -> list[Hit]:
        """Every hit in [start, end); test pulses are spread evenly over the shutter time."""
        span = end - start
        found: list[Hit] = []
        if span <= 0:
            return found
        if self.source.kind == "flat":
            found += self._flat(start, span)
        elif self.source.kind == "beta":
            found += self._beta(start, span)
        for pixel in self.noisy:
            for _ in range(self._poisson(NOISY_RATE * span)):
                found.append((start + self.rng.random() * span, pixel % 256, pixel // 256, 1))
        if self.tp_pulses and self.tp_region is not None:
            found += self._test_pulses(start, end, frame_start, shutter)
        found.sort()
        return found

    def _poisson(self, mean: float) -> int:
        if mean > 50:
            return max(0, round(self.rng.gauss(mean, math.sqrt(mean))))
        count, limit, product = 0, math.exp(-mean), self.rng.random()
        while product > limit:
            count += 1
            product *= self.rng.random()
        return count

    def _flat(self, start: float, span: float) -> list[Hit]:
        charge = XRAY_ELECTRONS * self.collection()
        found: list[Hit] = []
        for _ in range(self._poisson(self.source.rate * span)):
            pixel = self.rng.randrange(PIXELS)
            if self.fires(pixel, charge):
                t = start + self.rng.random() * span
                found.append((t, pixel % 256, pixel // 256, self.tot(charge)))
        return found

    def _beta(self, start: float, span: float) -> list[Hit]:
        """Clusters of 1 to 6 pixels whose charges sum to a Landau-like deposit."""
        found: list[Hit] = []
        for _ in range(self._poisson(self.source.rate * span)):
            deposit = BETA_ELECTRONS * self.rng.lognormvariate(0.0, 0.3) * self.collection()
            x0, y0 = self.rng.randrange(1, 254), self.rng.randrange(1, 254)
            size = self.rng.randint(1, 6)
            cells = [(x0, y0), (x0 + 1, y0), (x0, y0 + 1), (x0 + 1, y0 + 1), (x0 - 1, y0)]
            cells = cells[:size] + ([(x0, y0 - 1)] if size == 6 else [])
            weights = [self.rng.random() + (2.0 if i == 0 else 0.2) for i in range(len(cells))]
            t = start + self.rng.random() * span
            for (x, y), weight in zip(cells, weights, strict=True):
                charge = deposit * weight / sum(weights)
                if self.fires(y * 256 + x, charge):
                    found.append((t, x, y, self.tot(charge)))
        return found

    def _test_pulses(
        self, start: float, end: float, frame_start: float, shutter: float
    ) -> list[Hit]:
        assert self.tp_region is not None
        x0, y0, x1, y1 = self.tp_region
        charge = TP_ELECTRONS * self.tp_charge_dac
        found: list[Hit] = []
        for pulse in range(self.tp_pulses):
            t = frame_start + shutter * (pulse + 0.5) / self.tp_pulses
            if not start <= t < end:
                continue
            for y in range(y0, y1):
                for x in range(x0, x1):
                    if self.fires(y * 256 + x, charge):
                        found.append((t, x, y, self.tot(charge)))
        return found
