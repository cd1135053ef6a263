"""The simulated stand for the safety tests, sped up, and a recorder of the simulators' history
(what the instruments really did, independent of the drivers)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from helpers import stand_dict

from teststand.sim.stand import SimStand

SPEED = 100.0  # HV ramps at 1000 V/s, plates follow in ~0.6 s, 250 ms of polling is 25 s


def safety_stand_dict(
    speed: float = SPEED,
    sim: dict[str, dict[str, Any]] | None = None,
    links: dict[str, dict[str, Any]] | None = None,
    **interlocks: Any,
) -> dict[str, Any]:
    """The profile's stand, sped up, with modules that hold 600 V (no breakdown below 1 kV) and
    the chiller's own watchdog out of the way of simulated time; `sim` adds simulator options
    and `links` transport options by instrument name."""
    data = stand_dict(speed, links)
    hv = data["instruments"]["hv"]["simulator"]["options"]
    hv["breakdown"] = [1000.0] * 8
    hv["leakage"] = [1.0e-6] * 8
    for name, options in (sim or {}).items():
        simulator = data["instruments"][name].setdefault("simulator", {})
        simulator["options"] = {**simulator.get("options", {}), **options}
    data["limits"]["max_bias"] = {"planar": 600, "3d": 600}
    data["interlocks"] = {**data["interlocks"], "chiller_timeout": 3600, **interlocks}
    return data


#: A stand that starts cold (-10 °C) and dry (dew point -20 °C), the chiller in standby until
#: the test starts it; the box air leaks humidity in with a 600 s time constant.
COLD: dict[str, dict[str, Any]] = {
    "chiller": {"ambient": -10.0},
    "coldbox": {"ambient_dew_point": -20.0, "leak_time_constant": 600.0},
}


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll `condition` until true; the time it took (s), or fail naming `what`."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.01)
    return time.monotonic() - start


@dataclass
class Sample:
    time: float  # monotonic
    hv_max: float  # V, highest |VMON|
    margin: float  # K, coldest plate above the box's dew point
    lv_on: bool
    chiller_setpoint: float
    tec_setpoints: list[float]


@dataclass
class History:
    """Samples of the simulators' own state every `period` s, from a thread of the test."""

    sims: SimStand
    period: float = 0.01
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def sample(self) -> Sample:
        hv = self.sims["hv"].instrument.snapshot()
        box = self.sims["coldbox"].instrument
        with box.lock:
            box.tick()
            state = box.snapshot()
        lv = [self.sims[n].instrument.snapshot() for n in ("lv1", "lv2")]
        return Sample(
            time.monotonic(),
            max(abs(c["vmon"]) for c in hv["channels"]),
            min(state["plates"]) - state["dew_point"],
            any(s["master"] for s in lv),
            self.sims["chiller"].instrument.snapshot()["setpoint"],
            state["setpoints"],
        )

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self.sample())
            self._stop.wait(self.period)

    def stop(self) -> list[Sample]:
        self._stop.set()
        self._thread.join()
        self.samples.append(self.sample())  # the state now, after every earlier sample
        return self.samples
