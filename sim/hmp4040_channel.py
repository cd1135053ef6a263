"""One HMP4040 output: settings, protections (OVP, electronic fuse), the arbitrary waveform it
plays, and the load it drives. The behaviour is described in `teststand.sim.hmp4040`."""

from __future__ import annotations

from dataclasses import dataclass, field

from teststand.sim.scpi import Limits

VOLTAGE = Limits(0.0, 32.0, 0.0)
CURRENT = Limits(0.0, 10.0, 0.1)
PROTECTION = Limits(0.0, 33.0, 33.0)
VOLTAGE_STEP = Limits(0.0, 32.0, 1.0)
CURRENT_STEP = Limits(0.0, 10.0, 0.1)
FUSE_DELAY = Limits(0.0, 250.0, 0.0)  # ms
DWELL = Limits(0.06, 10.0, 1.0)  # s per waveform point
REPETITIONS = Limits(0, 255, 0)  # 0: forever
MAX_POINTS = 128


@dataclass(frozen=True)
class Waveform:
    """An arbitrary waveform: (volts, amps, dwell s) points played `repetitions` times (0: ever)."""

    points: tuple[tuple[float, float, float], ...]
    repetitions: int = 0

    @property
    def period(self) -> float:
        return sum(dwell for _, _, dwell in self.points)

    def at(self, elapsed: float) -> tuple[float, float] | None:
        """(volts, amps) `elapsed` s after the start, or None once the repetitions are over."""
        if self.repetitions and elapsed >= self.repetitions * self.period:
            return None
        into = elapsed % self.period
        for volts, amps, dwell in self.points:
            if into < dwell:
                return volts, amps
            into -= dwell
        return self.points[-1][:2]


@dataclass
class Channel:
    """One output: settings, switch and protection state, its waveform and its load."""

    load: float  # Ω
    voltage: float = VOLTAGE.default
    current: float = CURRENT.default
    protection: float = PROTECTION.default
    protection_mode: str = "MEASured"
    voltage_step: float = VOLTAGE_STEP.default
    current_step: float = CURRENT_STEP.default
    armed: bool = False
    tripped: bool = False  # OVP
    fuse: bool = False
    fuse_delay: float = FUSE_DELAY.default  # ms
    fuse_links: set[int] = field(default_factory=set)  # channel numbers switched off with it
    fuse_tripped: bool = False
    limited_for: float = 0.0  # s in constant-current mode while delivering
    waveform: Waveform | None = None
    waveform_start: float | None = None  # simulated time it was started; None: not playing

    def setpoint(self, now: float) -> tuple[float, float]:
        """(volts, amps) the channel regulates to now: its waveform's point while it plays."""
        if self.waveform is not None and self.waveform_start is not None:
            point = self.waveform.at(now - self.waveform_start)
            if point is not None:
                return point
            self.waveform_start = None
        return self.voltage, self.current

    def output(self, delivering: bool, now: float) -> tuple[float, float]:
        """(volts, amps) at the terminals: constant voltage, or constant current past the limit."""
        if not delivering:
            return 0.0, 0.0
        volts, limit = self.setpoint(now)
        amps = volts / self.load
        if amps > limit:
            return limit * self.load, limit
        return volts, amps

    def limited(self, delivering: bool, now: float) -> bool:
        """Whether the channel delivers in constant-current mode."""
        if not delivering:
            return False
        volts, limit = self.setpoint(now)
        return volts / self.load > limit

    def arm(self, on: bool) -> None:
        """Arm or disarm; arming clears a blown fuse."""
        self.armed = on
        if on:
            self.fuse_tripped = False
            self.limited_for = 0.0

    def over_voltage(self, delivering: bool, now: float) -> bool:
        """OVP: the output (MEASured mode) or the set voltage (PROTected) exceeds the level."""
        if not delivering:
            return False
        volts = self.output(True, now)[0]
        if self.protection_mode == "PROTected":
            volts = self.setpoint(now)[0]
        return volts > self.protection

    def fuse_blows(self, limited: bool) -> bool:
        """The fuse is on and the channel, limited now, has been limited for the fuse delay."""
        if not limited:
            self.limited_for = 0.0
            return False
        return self.fuse and self.limited_for * 1000.0 >= self.fuse_delay
