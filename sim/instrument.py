"""The base of every simulated instrument: text in, text out, physics advanced on each command."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from teststand.sim.clock import SimClock


class SimInstrument(ABC):
    """One simulated instrument.

    `handle(line)` takes one command line (terminator stripped) and returns the reply line
    (terminator not included) or None when the instrument sends nothing back. Physics is advanced
    to the clock's present time before each command, in `advance()`; state is guarded by `lock`
    so a test or a control console may read or change it from another thread.
    """

    kind: ClassVar[str]
    #: Bytes appended to every reply.
    reply_terminator: ClassVar[bytes] = b"\r\n"
    #: Options `__init__` accepts, with their meaning, for `teststand sim serve --help`.
    options_help: ClassVar[dict[str, str]] = {}

    def __init__(self, clock: SimClock | None = None) -> None:
        self.clock = clock or SimClock()
        self.lock = threading.RLock()
        self.local = False  # LOCAL control: SET commands refused
        self._last = self.clock.now()

    def handle(self, line: str) -> str | None:
        with self.lock:
            self.tick()
            return self.respond(line)

    def tick(self) -> None:
        """Advance physics to the clock's present time."""
        now = self.clock.now()
        dt = now - self._last
        if dt > 0:
            self.advance(dt)
            self._last = now

    def advance(self, dt: float) -> None:  # noqa: B027 - optional hook
        """Advance the physics by `dt` simulated seconds (instruments without dynamics skip it)."""

    @abstractmethod
    def respond(self, line: str) -> str | None:
        """Answer one command line."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the instrument holds besides its link (a data socket), at server stop."""

    def snapshot(self) -> dict[str, Any]:
        """A plain summary of the instrument's state, for consoles and logs."""
        return {}
