"""Fault injection: what a flaky USB link or a confused instrument does to the replies.

A spec is a comma-separated list of `key=value` (or bare `key` for a flag), for example
`garble=0.1,drop=0.05,delay=0.2,disconnect_after=50,local`:

| key | meaning |
|---|---|
| `garble=F` | fraction F of replies get bytes replaced by line noise (high-bit bytes) |
| `drop=F` | fraction F of replies are never sent |
| `delay=S` | every reply is held back S seconds (real time) |
| `disconnect_after=N` | every N commands the cable is pulled (pty or socket closed) |
| `replug=S` | seconds until a pulled cable is plugged back in (default 0.2) |
| `hang_after=N` | after the N-th command the instrument stops answering until reset |
| `hang` | the instrument stops answering now, until reset |
| `local` | the instrument is in LOCAL control and refuses every SET |
| `seed=N` | seed of the random choices, for reproducible runs |
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, fields


class FaultSpecError(ValueError):
    """A fault spec that does not parse; the message names the bad item and the allowed keys."""


@dataclass
class Faults:
    garble: float = 0.0
    drop: float = 0.0
    delay: float = 0.0
    disconnect_after: int | None = None
    replug: float = 0.2
    hang_after: int | None = None
    hang: bool = False
    local: bool = False
    seed: int | None = None
    rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    @classmethod
    def parse(cls, spec: str | None) -> Faults:
        faults = cls()
        faults.update(spec)
        return faults

    def update(self, spec: str | None) -> None:
        """Apply `spec` on top of the present faults (`none` clears them all)."""
        if spec is None or not spec.strip():
            return
        allowed = [f.name for f in fields(self) if f.name != "rng"]
        for item in spec.split(","):
            key, _, raw = item.strip().partition("=")
            key = key.strip().replace("-", "_")
            if key == "none":
                self.__init__()  # type: ignore[misc]
                continue
            if key not in allowed:
                raise FaultSpecError(
                    f"unknown fault {key!r} in {spec!r}; allowed: {', '.join(allowed)}, none"
                )
            try:
                setattr(self, key, _convert(key, raw.strip()))
            except ValueError as exc:
                raise FaultSpecError(f"bad value for fault {key!r} in {spec!r}: {exc}") from None
        if self.seed is not None:
            self.rng.seed(self.seed)

    def describe(self) -> str:
        active = [
            f"{f.name}={getattr(self, f.name)}"
            for f in fields(self)
            if f.name not in ("rng", "replug") and getattr(self, f.name) not in (None, 0.0, False)
        ]
        return ",".join(active) or "none"


def _convert(key: str, raw: str) -> float | int | bool | None:
    if key in ("hang", "local"):
        if raw in ("", "1", "true", "on", "yes"):
            return True
        if raw in ("0", "false", "off", "no"):
            return False
        raise ValueError(f"expected a flag (1/0, on/off), got {raw!r}")
    if key in ("disconnect_after", "hang_after", "seed"):
        if raw in ("", "none", "off"):
            return None
        value = int(raw)
        if value < 0:
            raise ValueError(f"expected a count >= 0, got {value}")
        return value
    value_f = float(raw)
    if key in ("garble", "drop") and not 0.0 <= value_f <= 1.0:
        raise ValueError(f"expected a fraction between 0 and 1, got {value_f}")
    if value_f < 0:
        raise ValueError(f"expected seconds >= 0, got {value_f}")
    return value_f


def garble(reply: bytes, rng: random.Random) -> bytes:
    """Replace about a third of the bytes (at least one) with line noise in 0x80..0xFF."""
    data = bytearray(reply)
    if not data:
        return bytes([rng.randint(0x80, 0xFF)])
    count = max(1, len(data) // 3)
    for index in rng.sample(range(len(data)), count):
        data[index] = rng.randint(0x80, 0xFF)
    return bytes(data)
