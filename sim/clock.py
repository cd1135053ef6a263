"""Simulated time: real time multiplied by a speed factor, so thermal cycles run in seconds."""

from __future__ import annotations

import time


class SimClock:
    """Seconds of simulated time since the clock started; `speed=100` runs 100 times faster."""

    def __init__(self, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError(f"simulation speed must be > 0, got {speed}")
        self._speed = speed
        self._origin = time.monotonic()
        self._offset = 0.0

    @property
    def speed(self) -> float:
        return self._speed

    @speed.setter
    def speed(self, value: float) -> None:
        if value <= 0:
            raise ValueError(f"simulation speed must be > 0, got {value}")
        self._offset = self.now()
        self._origin = time.monotonic()
        self._speed = value

    def now(self) -> float:
        return self._offset + (time.monotonic() - self._origin) * self._speed
