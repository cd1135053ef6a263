"""Progress of the running plan: its point, the point's voltage, and what it waits for.

Plans report through the module's `progress` (a `ProgressReporter`): `begin(plan, points)`,
`point(number, voltage)` before a point's step, `wait("settling", seconds)` before a long wait,
`end()` whatever way the plan ends. Every change goes to the listeners as a `Progress`:
`StatusLine` keeps one line on the session's terminal with a countdown (the live table erases it
before each row, see `display.RunTable`), `ProgressFile` writes it as JSON for the queue's
clients (`teststand queue status`/`watch` read it with `read_progress`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from bluesky.utils import ProgressBarBase, ProgressBarManager, TerminalProgressBar

log = logging.getLogger("teststand.callbacks.progress")

#: Erase from the cursor to the end of the screen (a status line, progress bars below it).
CLEAR_BELOW = "\r\x1b[J"
#: The environment variable naming the queue worker's progress file (`teststand qserver start`).
PROGRESS_ENV = "TESTSTAND_PROGRESS_FILE"


@dataclass(frozen=True)
class Progress:
    """Where the running plan is; `plan` empty when none runs."""

    plan: str = ""
    point: int = 0
    points: int = 0
    voltage: float | None = None
    waiting: str = ""  # what it waits for, e.g. "settling"
    seconds: float = 0.0  # how long that wait is
    until: float | None = None  # when it ends (time.time())

    def line(self, now: float | None = None, *, countdown: bool = True) -> str:
        """`iv_scan · point 12/41 · 55 V · settling 8 s left` (`countdown`) or `… settling 15 s`."""
        if not self.plan:
            return ""
        parts = [self.plan]
        if self.points:
            parts.append(f"point {self.point}/{self.points}")
        if self.voltage is not None:
            parts.append(f"{self.voltage:g} V")
        if self.waiting and countdown and self.until is not None:
            left = max(0.0, self.until - (time.time() if now is None else now))
            parts.append(f"{self.waiting} {left:.0f} s left")
        elif self.waiting:
            parts.append(f"{self.waiting} {self.seconds:g} s")
        return " · ".join(parts)


Listener = Callable[[Progress], object]


class ProgressReporter:
    """What plans call; hands each new `Progress` to `listeners` (their failures are logged)."""

    def __init__(self) -> None:
        self.current = Progress()
        self.listeners: list[Listener] = []

    def begin(self, plan: str, points: int = 0) -> None:
        self._publish(Progress(plan, points=points))

    def point(self, number: int, voltage: float | None = None) -> None:
        self._publish(dataclasses.replace(self.current, point=number, voltage=voltage, waiting=""))

    def wait(self, what: str, seconds: float) -> None:
        until = time.time() + seconds
        self._publish(dataclasses.replace(self.current, waiting=what, seconds=seconds, until=until))

    def waited(self) -> None:
        self._publish(dataclasses.replace(self.current, waiting="", seconds=0.0, until=None))

    def end(self) -> None:
        self._publish(Progress())

    def _publish(self, new: Progress) -> None:
        self.current = new
        for listener in list(self.listeners):
            try:
                listener(new)
            except Exception:
                log.exception("a progress listener failed")


progress = ProgressReporter()


class StatusLine:
    """One line on a terminal: the progress, redrawn every `tick` s while a wait counts down."""

    def __init__(self, stream: TextIO | None = None, tick: float = 1.0) -> None:
        self.stream = stream
        self.tick = tick
        self._shown = Progress()
        self._lock = threading.Lock()
        self._ticking: threading.Event | None = None

    def __call__(self, new: Progress) -> None:
        with self._lock:
            self._shown = new
            self._draw()
            if self._ticking is not None:
                self._ticking.set()
                self._ticking = None
            if new.waiting:
                self._ticking = threading.Event()
                threading.Thread(
                    target=self._count_down, args=(self._ticking,), daemon=True
                ).start()

    def _count_down(self, stop: threading.Event) -> None:
        while not stop.wait(self.tick):
            with self._lock:
                if not stop.is_set():
                    self._draw()

    def _draw(self) -> None:
        out = sys.stdout if self.stream is None else self.stream
        out.write(CLEAR_BELOW + self._shown.line())
        out.flush()


def progress_bars(stream: TextIO | None = None) -> ProgressBarManager:
    """bluesky's progress bars for `RE.waiting_hook`, drawn on `stream` (default sys.stdout)."""
    if stream is None:
        return ProgressBarManager()

    def bars(statuses: Iterable[Any]) -> ProgressBarBase:
        bar = TerminalProgressBar(statuses, delay_draw=0.2)  # type: ignore[no-untyped-call]
        bar.fp = stream  # nothing is drawn before delay_draw has passed
        return bar

    return ProgressBarManager(bars)


class ProgressFile:
    """Writes each `Progress` to `path` as JSON (replaced whole: readers never see half)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, new: Progress) -> None:
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(dataclasses.asdict(new)))
        os.replace(temporary, self.path)


def read_progress(path: Path) -> Progress:
    """The progress a `ProgressFile` wrote; an empty `Progress` without one."""
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        return Progress(**data)
    except (OSError, ValueError, TypeError):
        return Progress()


__all__ = [
    "CLEAR_BELOW",
    "PROGRESS_ENV",
    "Progress",
    "ProgressFile",
    "ProgressReporter",
    "StatusLine",
    "progress",
    "progress_bars",
    "read_progress",
]
