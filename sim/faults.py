"""Fault injection: what a flaky USB link or a confused instrument does to the replies.

A spec is a comma-separated list of `key=value` (or bare `key` for a flag), for example
`garble=0.1,drop=0.05,delay=0.2,disconnect_after=50,local`. Fractions apply to each reply
independently; one reply may suffer several faults. The table of keys is in README.md ("Fault
spec"); `KEYS` holds the same, and a spec with an unknown key or a bad value is refused with
`FaultSpecError` listing them.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, fields

#: Every key with its meaning (the README's table says the same at more length).
KEYS: dict[str, str] = {
    "garble": "fraction of replies with bytes replaced by high-bit line noise",
    "noise": "fraction of replies that gain printable-ASCII noise characters",
    "truncate": "fraction of replies that lose bytes mid-line (terminator kept)",
    "duplicate": "fraction of replies sent twice",
    "unsolicited": "fraction of replies with an unsolicited line just before or after them",
    "split": "fraction of replies written in several pieces with pauses",
    "split_pause": "longest pause between the pieces of a split reply, s (default 0.003)",
    "drop": "fraction of replies never sent",
    "misread": "the next N replies holding a decimal number get its first digit changed",
    "delay": "seconds every reply is held back",
    "disconnect_after": "pull the cable every N commands",
    "replug": "seconds until a pulled cable is plugged back in (default 0.2)",
    "hang_after": "stop answering after the N-th command, until reset",
    "hang": "stop answering now, until reset",
    "local": "LOCAL control: every SET is refused",
    "seed": "seed of the random choices",
}
#: Keys whose value is a fraction of replies, 0..1.
FRACTIONS = ("garble", "noise", "truncate", "duplicate", "unsolicited", "split", "drop")
FLAGS = ("hang", "local")
COUNTS = ("misread", "disconnect_after", "hang_after", "seed")
#: Printable ASCII, blank included: what line noise looks like once a UART has framed it.
PRINTABLE = bytes(range(0x20, 0x7F))


class FaultSpecError(ValueError):
    """A fault spec that does not parse; the message names the bad item and the allowed keys."""


def _allowed() -> str:
    return ", ".join([*KEYS, "none"])


@dataclass
class Faults:
    garble: float = 0.0
    noise: float = 0.0
    truncate: float = 0.0
    misread: int | None = None
    duplicate: float = 0.0
    unsolicited: float = 0.0
    split: float = 0.0
    split_pause: float = 0.003
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
        """Apply `spec` on top of the present faults (`none` clears them all).

        The whole spec is checked first: a bad item leaves the present faults unchanged.
        """
        if spec is None or not spec.strip():
            return
        changes: list[tuple[str, float | int | bool | None]] = []
        for item in filter(str.strip, spec.split(",")):
            key, _, raw = item.strip().partition("=")
            key = key.strip().replace("-", "_")
            if key == "none":
                changes.append((key, None))
                continue
            if key not in KEYS:
                raise FaultSpecError(f"unknown fault {key!r} in {spec!r}; allowed: {_allowed()}")
            try:
                changes.append((key, _convert(key, raw.strip())))
            except ValueError as exc:
                raise FaultSpecError(
                    f"bad value for fault {key!r} in {spec!r}: {exc}; allowed: {_allowed()}"
                ) from None
        for key, value in changes:
            if key == "none":
                self.__init__()  # type: ignore[misc]
            else:
                setattr(self, key, value)
        if self.seed is not None:
            self.rng.seed(self.seed)

    def describe(self) -> str:
        defaults = Faults()
        active = [
            f"{f.name}={getattr(self, f.name)}"
            for f in fields(self)
            if f.name != "rng" and getattr(self, f.name) != getattr(defaults, f.name)
        ]
        return ",".join(active) or "none"

    def chance(self, fraction: float) -> bool:
        return fraction > 0 and self.rng.random() < fraction


def _convert(key: str, raw: str) -> float | int | bool | None:
    if key in FLAGS:
        if raw in ("", "1", "true", "on", "yes"):
            return True
        if raw in ("0", "false", "off", "no"):
            return False
        raise ValueError(f"expected a flag (1/0, on/off), got {raw!r}")
    if key in COUNTS:
        if raw in ("", "none", "off"):
            return None
        value = int(raw)
        if value < 0:
            raise ValueError(f"expected a count >= 0, got {value}")
        return value
    value_f = float(raw)
    if key in FRACTIONS and not 0.0 <= value_f <= 1.0:
        raise ValueError(f"expected a fraction between 0 and 1, got {value_f}")
    if not value_f >= 0:  # also refuses nan
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


def add_noise(line: bytes, rng: random.Random) -> bytes:
    """Insert one to three printable ASCII characters at random places (bytes gained)."""
    data = bytearray(line)
    for _ in range(rng.randint(1, 3)):
        data.insert(rng.randint(0, len(data)), rng.choice(PRINTABLE))
    return bytes(data)


def misread(line: bytes) -> bytes | None:
    """Line noise that keeps the format: the first digit of the first decimal number becomes
    a `2` (a `3` if it was one), so `020.00` reads `220.00`; None when the line holds no
    decimal number."""
    number = _DECIMAL.search(line)
    if number is None:
        return None
    at = number.start()
    digit = b"3" if line[at : at + 1] == b"2" else b"2"
    return line[:at] + digit + line[at + 1 :]


_DECIMAL = re.compile(rb"\d+\.\d+")


def truncate(line: bytes, rng: random.Random) -> bytes:
    """Lose a run of bytes after the first one, up to the end of the line (bytes lost)."""
    if len(line) < 2:
        return b""
    start = rng.randint(1, len(line) - 1)
    end = rng.randint(start + 1, min(len(line), start + max(1, len(line) // 3)))
    return line[:start] + line[end:]


def split(data: bytes, rng: random.Random, longest_pause: float) -> list[tuple[float, bytes]]:
    """Cut `data` into two to four pieces, each after a random pause of up to `longest_pause`."""
    if len(data) < 2:
        return [(0.0, data)]
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(1, 3))))
    bounds = [0, *cuts, len(data)]
    return [
        (0.0 if i == 0 else rng.uniform(0, longest_pause), data[bounds[i] : bounds[i + 1]])
        for i in range(len(bounds) - 1)
    ]


def unsolicited_line(
    history: Sequence[tuple[bytes, bytes]], command: bytes, rng: random.Random
) -> bytes:
    """An earlier reply line to another command (the worst case: it looks like a reply), or a
    notice line when there is none yet."""
    others = [reply for earlier, reply in history if earlier != command]
    return rng.choice(others) if others else b"NOTICE"
