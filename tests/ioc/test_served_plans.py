"""The key plan tests on the served stand (every device over CA to the IOC): an IV scan with a
compliance stop, HV to 0 V on every exit path, and a suspender firing. Their direct-mode twins
are in tests/plans."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from bluesky import Msg, RunEngine
from bluesky.utils import RunEngineInterrupted
from conftest import Sims

from teststand.plans.iv import iv_scan
from teststand.plans.stability import long_term_stability
from teststand.plans.suspenders import install_suspenders
from teststand.plans.temperature import set_temperature
from teststand.stand import TestStand


class Events:
    """Collects documents; runs `actions[n]` at the n-th event."""

    def __init__(self) -> None:
        self.docs: list[tuple[str, dict[str, Any]]] = []
        self.actions: dict[int, Any] = {}

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        self.docs.append((name, doc))
        count = sum(1 for n, _ in self.docs if n == "event")
        if name == "event" and count in self.actions:
            self.actions.pop(count)()

    def of(self, name: str) -> list[dict[str, Any]]:
        return [doc for n, doc in self.docs if n == name]

    def primary(self) -> list[dict[str, Any]]:
        descriptors = {d["uid"] for d in self.of("descriptor") if d["name"] == "primary"}
        return [e for e in self.of("event") if e["descriptor"] in descriptors]


@pytest.fixture
def docs(RE: RunEngine) -> Events:
    collected = Events()
    RE.subscribe(collected)
    return collected


def test_iv_scan_stops_a_slot_at_compliance(
    RE: RunEngine, served: TestStand, sims: Sims, docs: Events
) -> None:
    # slot 6 leaks 30 µA: with 20 µA compliance it stops at once and ramps down
    RE(iv_scan(served, [1, 6], stop=40, step=10, settle=0, compliance=20e-6))
    events = docs.primary()
    states = [e["data"]["iv-slot6_state"] for e in events]
    first = states.index("compliance")
    assert first > 0 and set(states[:first]) == {"measuring"}
    assert set(states[first:]) == {"compliance"}
    assert events[-1]["data"]["slot1"] == pytest.approx(40, abs=2)
    stopped_at = events[first]["data"]["slot6"]  # it stops there and goes no higher
    assert all(e["data"]["slot6"] <= stopped_at + 2 for e in events[first:])
    start = docs.of("start")[0]
    assert start["iv_keys"]["6"]["current"] == "slot6-leakage_current"  # the same data keys
    descriptor = next(d for d in docs.of("descriptor") if d["name"] == "primary")
    assert descriptor["data_keys"]["slot1"]["source"] == "ca://TSI:SLOT1:BIAS"
    assert descriptor["data_keys"]["slot1"]["units"] == "V"
    assert max(sims.vmon()) < 2


def test_an_exception_mid_scan_ends_at_zero(
    RE: RunEngine, served: TestStand, sims: Sims, docs: Events
) -> None:
    def fail() -> None:
        raise RuntimeError("analysis crashed")

    docs.actions[4] = fail
    with pytest.raises(RuntimeError, match="analysis crashed"):
        RE(iv_scan(served, [1, 2], stop=100, step=10, settle=0))
    assert docs.of("stop")[0]["exit_status"] == "fail"
    assert max(sims.vmon()) < 2


def test_pause_then_abort_ends_at_zero(
    RE: RunEngine, served: TestStand, sims: Sims, docs: Events
) -> None:
    docs.actions[4] = lambda: threading.Thread(target=RE.request_pause).start()
    with pytest.raises(RunEngineInterrupted):
        RE(iv_scan(served, [1, 2], stop=100, step=10, settle=0))
    assert RE.state == "paused"
    assert max(sims.vmon()[:2]) >= 10  # paused with HV up
    RE.abort("operator abort")
    assert docs.of("stop")[0]["exit_status"] == "abort"
    assert max(sims.vmon()) < 2


def test_stop_request_ends_at_zero(
    RE: RunEngine, served: TestStand, sims: Sims, docs: Events
) -> None:
    docs.actions[3] = lambda: threading.Thread(target=RE.request_pause).start()
    with pytest.raises(RunEngineInterrupted):
        RE(iv_scan(served, [5], stop=100, step=10, settle=0))
    RE.stop()
    assert docs.of("stop")[0]["exit_status"] == "success"
    assert max(sims.vmon()) < 2


def test_an_open_lid_suspends_the_plan_with_hv_at_zero_until_closed(
    RE: RunEngine, served: TestStand, sims: Sims, capsys: pytest.CaptureFixture[str]
) -> None:
    suspenders = install_suspenders(RE, served, sleep=0.2, period=0.05)
    seen: dict[str, Any] = {}
    started = threading.Event()

    def operator() -> None:
        if not started.wait(30):
            return
        seen["before"] = sims.vmon()[:3]
        sims.ask("coldbox call open_lid")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if any(s.tripped for s in suspenders) and max(sims.vmon()[:3]) < 2:
                seen["suspended"] = sims.vmon()[:3]
                break
            time.sleep(0.05)
        sims.ask("coldbox call close_lid")

    def on_event(name: str, doc: dict[str, Any]) -> None:
        if name == "event" and "lts-slot1_state" in doc["data"] and doc["seq_num"] == 3:
            started.set()

    RE.subscribe(on_event)
    thread = threading.Thread(target=operator)
    thread.start()
    try:
        RE(long_term_stability(served, [1, 2, 3], voltage=50.0, duration=3.0, interval=0.1))
    finally:
        started.set()
        thread.join()
        RE.clear_suspenders()
    assert seen["before"] == [pytest.approx(50, abs=2)] * 3
    assert seen["suspended"] == [pytest.approx(0, abs=2)] * 3
    assert "Suspending" in capsys.readouterr().out
    assert max(sims.vmon()) < 2


def test_a_temperature_step_follows_the_power_order_over_ca(
    RE: RunEngine, served: TestStand, sims: Sims
) -> None:
    """The step writes the TEC and chiller set points, then powers the TECs and starts the
    chiller, then moves (QUALIFICATION.md's power order). Over CA the set point writes are plain
    (checked) writes as in direct mode: the IOC's move, which needs the TECs powered, is only
    the coldbox's `set()`. (It failed with "TEC power is off" when every set point PV moved.)"""
    box = served.instruments["coldbox"]
    RE(_power_off(box))
    target = round(max(sims.status("coldbox")["plates"]) + 1.0, 1)
    try:
        # The chiller 1 K below the target: at the default 10 K below, the IOC refused its set
        # point (rightly) whenever the box was still humid from the lid test before this one.
        RE(set_temperature(served, target, settle=0.5, interval=0.2, chiller_offset=-1.0))
        coldbox = sims.status("coldbox")
        assert all(coldbox["power"]) and coldbox["setpoints"] == [target] * 8
        assert sims.status("chiller")["running"]
        assert abs(sum(coldbox["plates"]) / 8 - target) < 0.5
        with pytest.raises(Exception, match="outside the drive limits"):  # still checked
            RE(_write(box.setpoint, 99.0))
    finally:
        RE(_power_off(box))


def _write(signal: Any, value: Any) -> Any:
    yield Msg("set", signal, value, group="w")
    yield Msg("wait", None, group="w")


def _power_off(box: Any) -> Any:
    yield from _write(box.tec_power, False)
