"""Physics shared by the simulators: sensor leakage and breakdown, thermal lag, dew point."""

from __future__ import annotations

import math
from dataclasses import dataclass

BOLTZMANN_EV = 8.617e-5  # eV/K
SILICON_GAP_EV = 1.21
ZERO_CELSIUS = 273.15


def leakage_temperature_factor(temperature_c: float, reference_c: float = 20.0) -> float:
    """I(T)/I(T_ref) for bulk generation current: T²·exp(−E_g/2kT), normalised to T_ref."""
    t = temperature_c + ZERO_CELSIUS
    t_ref = reference_c + ZERO_CELSIUS
    return (t / t_ref) ** 2 * math.exp(-SILICON_GAP_EV / (2 * BOLTZMANN_EV) * (1 / t - 1 / t_ref))


@dataclass
class SensorModel:
    """A reverse-biased silicon sensor: diode-like leakage that saturates at full depletion and
    grows by avalanche multiplication (Miller's formula) towards the breakdown voltage.

    Voltages are magnitudes in V; currents are magnitudes in A.
    """

    leakage_20c: float = 1.0e-6  # A at full depletion, 20 °C
    depletion_voltage: float = 50.0
    breakdown_voltage: float = 400.0
    miller_exponent: float = 8.0
    ohmic_resistance: float = 1.0e11  # Ω, surface leakage in parallel (1 nA at 100 V)

    def current(self, voltage: float, temperature_c: float = 20.0) -> float:
        v = abs(voltage)
        if v == 0.0:
            return 0.0
        bulk = self.leakage_20c * min(1.0, math.sqrt(v / self.depletion_voltage))
        bulk *= leakage_temperature_factor(temperature_c)
        ratio = min(v / self.breakdown_voltage, 0.9995)
        multiplication = 1.0 / (1.0 - math.pow(ratio, self.miller_exponent))
        if v > self.breakdown_voltage:  # past breakdown: exponential run-away, bounded
            multiplication *= math.exp(min((v - self.breakdown_voltage) / 2.0, 30.0))
        return bulk * multiplication + v / self.ohmic_resistance

    def voltage_for_current(self, current: float, temperature_c: float, v_max: float) -> float:
        """The largest voltage in [0, v_max] whose current does not exceed `current` (bisection)."""
        low, high = 0.0, abs(v_max)
        if self.current(high, temperature_c) <= current:
            return high
        for _ in range(60):
            mid = (low + high) / 2
            if self.current(mid, temperature_c) <= current:
                low = mid
            else:
                high = mid
        return low


def first_order_lag(value: float, target: float, dt: float, time_constant: float) -> float:
    """Move `value` towards `target` as a first-order system over `dt` seconds."""
    if time_constant <= 0:
        return target
    return target + (value - target) * math.exp(-dt / time_constant)


def ramp(value: float, target: float, dt: float, rate: float) -> float:
    """Move `value` towards `target` at `rate` units per second, without overshoot."""
    step = rate * dt
    if abs(target - value) <= step:
        return target
    return value + math.copysign(step, target - value)


# Magnus formula, Sensirion coefficients, valid −45…60 °C.
MAGNUS_B = 17.62
MAGNUS_C = 243.12


def dew_point(temperature_c: float, relative_humidity: float) -> float:
    """Dew point in °C from temperature (°C) and relative humidity (%)."""
    rh = max(relative_humidity, 1e-6)
    gamma = math.log(rh / 100.0) + MAGNUS_B * temperature_c / (MAGNUS_C + temperature_c)
    return MAGNUS_C * gamma / (MAGNUS_B - gamma)


def relative_humidity(temperature_c: float, dew_point_c: float) -> float:
    """Relative humidity in % of air at `temperature_c` whose dew point is `dew_point_c`."""
    gamma_dp = MAGNUS_B * dew_point_c / (MAGNUS_C + dew_point_c)
    gamma_t = MAGNUS_B * temperature_c / (MAGNUS_C + temperature_c)
    return min(100.0, 100.0 * math.exp(gamma_dp - gamma_t))
