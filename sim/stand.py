"""A whole simulated stand: every simulator on one loop and one clock, coupled by physics.

The coldbox follows the chiller's bath; the sensors on the HV channels and the SMU follow the
coldbox's plate temperature, so cooling the chiller lowers the leakage current the supply reads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from teststand.sim.clock import SimClock
from teststand.sim.runner import RunningSim, SimThread, start_simulator

#: Which simulator kinds take a temperature from which others, and under which option name.
FOLLOWS: dict[str, tuple[str, str]] = {
    "coldbox": ("lauda", "chiller"),
    "caen-dt8033": ("coldbox", "temperature"),
    "caen-n1470": ("coldbox", "temperature"),
    "keithley2410": ("coldbox", "temperature"),
}


#: The option of a pixel detector's simulator naming the HV channel that biases its sensor.
BIAS_FROM = "bias_from"  # "INSTRUMENT:CHANNEL", e.g. "hv:0"


@dataclass(frozen=True)
class SimSpec:
    """One simulator of a stand: its kind, its server settings and its instrument options."""

    kind: str
    faults: str | None = None
    baud: int | None = None
    latency: float = 0.0
    options: Mapping[str, Any] = field(default_factory=dict)


class SimStand:
    """Running simulators by instrument name; `stop()` ends them all."""

    def __init__(self, thread: SimThread, clock: SimClock, sims: dict[str, RunningSim]) -> None:
        self.thread = thread
        self.clock = clock
        self.sims = sims

    def __getitem__(self, name: str) -> RunningSim:
        return self.sims[name]

    def addresses(self) -> dict[str, str]:
        return {name: sim.address for name, sim in self.sims.items()}

    def stop(self) -> None:
        for sim in self.sims.values():
            sim.stop()
        self.thread.close()

    def __enter__(self) -> SimStand:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_stand(
    specs: Mapping[str, SimSpec],
    *,
    speed: float = 1.0,
    transport: Literal["pty", "tcp"] = "pty",
    host: str = "127.0.0.1",
) -> SimStand:
    """Start every simulator of `specs`, the temperature sources first, and couple them."""
    thread = SimThread()
    clock = SimClock(speed)
    sims: dict[str, RunningSim] = {}
    try:
        for name in sorted(specs, key=lambda n: _order(specs[n].kind)):
            spec = specs[name]
            options = dict(spec.options)
            source = _temperature_source(spec.kind, specs, sims)
            if source is not None:
                options.setdefault(FOLLOWS[spec.kind][1], source)
            bias_from = options.pop(BIAS_FROM, None)
            sims[name] = start_simulator(
                spec.kind,
                transport=transport,
                host=host,
                baud=spec.baud,
                latency=spec.latency,
                faults=spec.faults,
                clock=clock,
                thread=thread,
                **options,
            )
            if bias_from is not None:
                sims[name].instrument.bias_source = _channel_voltage(sims, str(bias_from))  # type: ignore[attr-defined]
    except BaseException:
        SimStand(thread, clock, sims).stop()
        raise
    return SimStand(thread, clock, sims)


def _order(kind: str) -> int:
    return {"lauda": 0, "coldbox": 1, "timepix3": 3}.get(kind, 2)


def _channel_voltage(sims: Mapping[str, RunningSim], where: str) -> Callable[[], float]:
    """|VMON| of `INSTRUMENT:CHANNEL` among the started simulators."""
    name, _, channel = where.partition(":")
    if name not in sims or not channel.isdigit():
        raise ValueError(f"{BIAS_FROM}={where!r}: give an HV simulator and channel, e.g. 'hv:0'")
    supply = sims[name].instrument
    return lambda: float(supply.channel_voltage(int(channel)))  # type: ignore[attr-defined]


def _temperature_source(
    kind: str, specs: Mapping[str, SimSpec], sims: Mapping[str, RunningSim]
) -> Callable[[], float] | None:
    if kind not in FOLLOWS:
        return None
    wanted = FOLLOWS[kind][0]
    for name, spec in specs.items():
        if spec.kind == wanted and name in sims:
            return _present_temperature(sims[name].instrument)
    return None


def _present_temperature(instrument: Any) -> Callable[[], float]:
    """The source's temperature advanced to the present simulated time."""

    def read() -> float:
        with instrument.lock:
            instrument.tick()
            return float(instrument.temperature)

    return read
