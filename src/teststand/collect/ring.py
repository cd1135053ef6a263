"""A fixed-length ring buffer of (timestamp, value) samples, on numpy arrays."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]


class Ring:
    """The last `capacity` samples; `total` counts every sample ever appended (since `clear`)."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"a ring needs room for at least one sample, not {capacity}")
        self.capacity = capacity
        self._times: Array = np.zeros(capacity)
        self._values: Array = np.zeros(capacity)
        self._next = 0
        self.total = 0

    def __len__(self) -> int:
        return min(self.total, self.capacity)

    def append(self, timestamp: float, value: float) -> None:
        self._times[self._next] = timestamp
        self._values[self._next] = value
        self._next = (self._next + 1) % self.capacity
        self.total += 1

    def clear(self) -> None:
        self._next = 0
        self.total = 0

    @property
    def overwritten(self) -> int:
        """Samples lost to the ring's length (appended, then overwritten by newer ones)."""
        return max(0, self.total - self.capacity)

    def snapshot(self) -> tuple[Array, Array]:
        """Copies of (timestamps, values), oldest first."""
        if self.total <= self.capacity:
            return self._times[: self.total].copy(), self._values[: self.total].copy()
        order = np.r_[self._next : self.capacity, 0 : self._next]
        return self._times[order], self._values[order]
