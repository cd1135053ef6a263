"""Safety that holds when the RunEngine dies: a RunEngine in another process, killed, stopped or
halted in the middle of an IV scan at 500 V, with the stand served by the IOC."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from bluesky import RunEngine
from bluesky.run_engine import call_in_bluesky_event_loop
from ioc_served import CLIENT, HEARTBEAT_TIMEOUT, PREFIX, SPEED, Served, served
from safety_helpers import History, wait_until

from teststand.app.qserver import QserverOptions, free_port, manager_client, start, stop
from teststand.safety.ca_control import CAControl
from teststand.safety.state import StandState

PROFILE = Path(__file__).resolve().parents[2] / "profile_collection"

__all__ = ["served"]  # the module's fixture


def start_client(served: Served, *mode: str) -> subprocess.Popen[str]:
    log = served.file.with_name("client.log").open("a")
    process = subprocess.Popen(
        [sys.executable, str(CLIENT), str(served.client_file), PREFIX, *mode],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith("scanning"), served.file.with_name("client.log").read_text()[-3000:]
    return process


def check_safe_after(
    served: Served,
    history: History,
    fault_time: float,
    why: str,
    detection: float = 0.0,
    lv: bool = True,
) -> Any:
    """Every channel below 2 V within V/RDW + 5 s of the fault (plus `detection`, the time the
    fault takes to be a fault: a heartbeat's timeout), LV (when `lv` was on) off after it, SAFE
    with the reason; returns the samples."""
    peak = max(s.hv_max for s in history.samples)
    floor = peak / (50.0 * SPEED)
    budget = floor + 5.0 + detection - (time.monotonic() - fault_time)
    wait_until(lambda: history.sample().hv_max < 2.0, budget, "every channel below 2 V")
    wait_until(lambda: not history.sample().lv_on, 5.0, "LV off")
    samples = history.stop()
    if lv:
        assert all(s.hv_max < 2.0 for s in samples if not s.lv_on and s.time > fault_time)
    assert served.get("STATE") == "SAFE"
    assert why in served.get("STATE:REASON")
    return samples


@pytest.mark.parametrize(
    ("fault", "why", "detection"),
    [
        (signal.SIGKILL, "its Channel Access connection closed (process killed?)", 0.0),
        (signal.SIGSTOP, "sent no heartbeat", HEARTBEAT_TIMEOUT),
    ],
)
def test_a_runengine_killed_or_stopped_at_500_volts(
    served: Served, fault: signal.Signals, why: str, detection: float
) -> None:
    client = start_client(served)
    history = History(served.sims)
    try:
        wait_until(lambda: history.sample().hv_max > 495, 90, "500 V reached")
        assert served.get("STATE") == "RUN"
        fault_time = time.monotonic()
        client.send_signal(fault)
        check_safe_after(served, history, fault_time, why, detection)
    finally:
        client.kill()
        client.wait(10)
        served.reset()


@pytest.mark.parametrize(
    ("fault", "why"), [("lid", "the coldbox lid is open"), ("humidity", "dew point margin")]
)
def test_a_humidity_spike_or_an_open_lid_at_500_volts(served: Served, fault: str, why: str) -> None:
    """Through the IOC process: HV at 0 V within V/RDW + 5 s, before any plate is wet."""
    box: Any = served.sims["coldbox"].instrument
    margin = served.limits.dew_point_margin
    client = start_client(served)
    history = History(served.sims)
    try:
        wait_until(lambda: history.sample().hv_max > 495, 90, "500 V reached")
        if fault == "lid":
            fault_time = time.monotonic()
            box.open_lid()
        else:  # the dry air stops and lab air at a 19.5 °C dew point leaks in (plates at 20 °C)
            box.handle("set valve0 off")
            box.set_ambient_dew_point(19.5)
            wait_until(lambda: history.sample().margin < margin, 30, "the margin under its limit")
            fault_time = time.monotonic()
        samples = check_safe_after(served, history, fault_time, why)
        assert all(s.hv_max < 2.0 for s in samples if s.margin <= 0)  # never HV on a wet plate
    finally:
        client.kill()
        client.wait(10)
        box.close_lid()
        box.set_ambient_dew_point(9.0)
        history.stop()
        wait_until(lambda: history.sample().margin > margin + 1, 60, "the box dry again")
        served.reset()


def test_re_halt_during_a_ramp(served: Served) -> None:
    client = start_client(served, "halt")
    history = History(served.sims)
    try:
        assert client.stdout is not None
        while not client.stdout.readline().startswith("halted"):  # bluesky prints "Halting…"
            pass
        check_safe_after(served, history, time.monotonic(), "went halting with the stand in RUN")
        assert client.poll() is None  # alive, heartbeat going: the halt alone was seen
    finally:
        client.kill()
        client.wait(10)
        served.reset()


def test_a_session_knows_the_stands_state_as_it_connects(RE: RunEngine, served: Served) -> None:
    """A plan started at once after `CAControl.connect` acts on the IOC's state: it asked for
    READY from the OFF it assumed until the monitor's first update, and the IOC refused
    "READY -> READY" (a client started right after another one had left the stand READY)."""
    served.put("CONTROL:TAKEOVER", "pid=test")
    try:
        served.put("STATE:CMD", "READY test")
        control = call_in_bluesky_event_loop(CAControl.connect(PREFIX, "test"))
        try:
            assert control.state()[0] is StandState.READY
        finally:
            control.close()
    finally:
        served.reset()


def test_a_session_follows_a_long_reason_with_non_ascii_text(RE: RunEngine, served: Served) -> None:
    """The reason is a char array: a monitor of it as a 40-byte CA string cut "-20.0 °C" inside
    its "°" (a UnicodeDecodeError in the monitor's callback, the update lost)."""
    why = "the dew point margin 2.5 K is below 3 K: coldest plate -20.0 °C, dew point -22.5 °C"
    served.put("CONTROL:TAKEOVER", "pid=test")
    try:
        if served.get("STATE") != "READY":  # (READY -> READY is refused)
            served.put("STATE:CMD", "READY test")
        control = call_in_bluesky_event_loop(CAControl.connect(PREFIX, "test"))
        try:
            served.put("STATE:CMD", f"RUN {why}")
            wait_until(lambda: control.state() == (StandState.RUN, why), 10, "the whole reason")
            served.put("STATE:CMD", "READY done")
        finally:
            control.close()
    finally:
        served.reset()


def test_a_script_that_fails_attached_exits_with_its_error(served: Served) -> None:
    """A RunEngine script tied to the IOC whose plan is refused, never detached: it ends with its
    error and exit code 1 (libca aborted it at exit, under the heartbeat's put: SIGABRT)."""
    log_file = served.file.with_name("client.log")
    start = log_file.stat().st_size if log_file.exists() else 0
    process = start_client(served, "refused")
    try:
        assert process.wait(60) == 1
    finally:
        process.kill()
    log = log_file.read_text()[start:]
    assert "PlanArgumentError: slot 1: 10000.0 V is above" in log
    assert "terminate called" not in log
    served.reset()


def test_hv_put_outside_run_is_refused(served: Served) -> None:
    served.put("CONTROL:TAKEOVER", "pid=test")
    try:
        served.pvs["SLOT1:BIAS_SETPOINT"].write([100.0], wait=False)
        wait_until(lambda: "only in RUN" in served.get("SLOT1:MSG"), 10, "the refusal's reason")
        assert served.sims["hv"].instrument.snapshot()["channels"][0]["vset"] == 0  # type: ignore[attr-defined]
    finally:
        served.put("CONTROL:RELEASE", "test")


def last_result(api: Any) -> dict[str, Any]:
    """The result of the newest item of the queue server's history."""
    result: dict[str, Any] = api.history_get()["items"][-1]["result"]
    return result


def reset_from_the_queue_server(api: Any, why: str) -> dict[str, Any]:
    """The profile's function `reset_stand(why)` run by the queue server's worker; its result."""
    from bluesky_queueserver_api import BFunc

    task = api.function_execute(BFunc("reset_stand", why=why))["task_uid"]
    api.wait_for_completed_task(task, timeout=60)
    result: dict[str, Any] = api.task_result(task)["result"]
    return result


def test_the_queue_stops_on_a_trip_and_resets_the_stand_then_its_worker_is_killed(
    served: Served, tmp_path: Path
) -> None:
    """A real queue server on the served stand (its RE worker holds control):
    1. the lid opens under the worker's IV scan at 500 V: the plan fails with the IOC's reason
       and the queue stops; the function `reset_stand` (run by the queue server's worker while
       the lid's suspender holds it) is refused with the IOC's reason while the lid is open and
       accepted once it is closed;
    2. the worker, in RUN, is killed with SIGKILL during the ramp to 500 V: the IOC's watchdog
       brings HV to 0 V.
    The profile's startup without storage (no Tiled: what is tested is the worker, not where
    its runs go)."""
    from bluesky_queueserver_api import BPlan

    box: Any = served.sims["coldbox"].instrument
    startup = tmp_path / "startup"
    startup.mkdir()
    for name in ("00_run_engine.py", "10_stand.py", "40_plans.py"):
        (startup / name).symlink_to(PROFILE / "startup" / name)
    state_dir, control = tmp_path / "qserver", free_port()
    options = QserverOptions(
        profile=PROFILE,
        startup_dir=startup,
        stand=served.client_file,
        state_dir=state_dir,
        control_port=control,
        info_port=free_port(),
    )
    start(options)
    history = History(served.sims)
    plan = BPlan("iv_scan", slots="1-8", start=500, stop=500, step=5, settle=600.0)
    try:
        api = manager_client(f"tcp://127.0.0.1:{control}", timeout=30)
        api.environment_open()
        api.wait_for_idle(timeout=180)
        log = state_dir / "re-manager.log"
        assert api.status()["worker_environment_exists"], log.read_text()[-3000:]
        # 1. a trip under the worker stops the queue; the reset from the queue server
        api.item_add(plan)
        api.queue_start()
        wait_until(lambda: history.sample().hv_max > 100, 120, "the ramp under way")
        box.open_lid()
        api.wait_for_idle(timeout=60)
        failed = last_result(api)
        assert failed["exit_status"] == "failed"
        assert "the stand went SAFE: the coldbox lid is open" in failed["msg"]
        assert served.get("STATE") == "SAFE" and api.status()["manager_state"] == "idle"
        api.queue_clear()
        refused = reset_from_the_queue_server(api, "is the lid closed?")
        for _ in range(20):  # the IOC's safe action may still be under way
            if "the safe action is still under way" not in refused["msg"]:
                break
            time.sleep(0.5)
            refused = reset_from_the_queue_server(api, "is the lid closed?")
        assert not refused["success"]
        assert "reset refused: the cause persists: the coldbox lid is open" in refused["msg"]
        assert served.get("STATE") == "SAFE"
        box.close_lid()
        accepted = reset_from_the_queue_server(api, "the lid is closed")
        assert accepted["success"], accepted["msg"]
        assert accepted["return_value"] == "reset: the stand is READY"
        assert served.get("STATE") == "READY"
        # 2. the worker killed during the ramp
        api.item_add(plan)
        api.queue_start()
        wait_until(lambda: history.sample().hv_max > 100, 120, "the ramp under way")
        assert served.get("STATE") == "RUN"
        owner = re.search(r"pid=(\d+)", served.get("CONTROL:OWNER"))  # the worker holds it
        assert owner is not None
        worker = int(owner.group(1))
        fault_time = time.monotonic()
        os.kill(worker, signal.SIGKILL)
        # the queued IV scan ramps HV with LV off (the script's client switches LV on first)
        why = "its Channel Access connection closed"
        check_safe_after(served, history, fault_time, why, lv=False)
    finally:
        box.close_lid()
        history.stop()
        stop(state_dir, force=True)
        served.reset()


def ioc_log_lines(served: Served, text: str) -> list[str]:
    return [line for line in served.ioc.log.read_text().splitlines() if text in line]


def test_one_garbled_chiller_reading_does_not_trip_and_a_real_over_temperature_does(
    served: Served,
) -> None:
    """A reply that passes the strict format with a wrong number (the bath at 220.00 °C for
    20.00 °C: the simulator's `misread` fault) is logged, not acted on; a bath that keeps
    reading over `interlocks.over_temperature` trips SAFE at its second reading."""
    chiller = served.sims["chiller"]
    unconfirmed = "not confirmed by the next reading"
    before = len(ioc_log_lines(served, unconfirmed))
    wait_until(lambda: served.get("STATE") == "INIT", 10, "INIT")
    try:
        for _ in range(40):  # the IOC's poll loop reads the bath too: until the watchdog's read
            chiller.set_faults("misread=1")
            wait_until(lambda: not chiller.server.faults.misread, 10, "the garbled reply sent")
            time.sleep(0.5)
            assert served.get("STATE") == "INIT", served.get("STATE:REASON")
            if len(ioc_log_lines(served, unconfirmed)) > before:
                break
        else:
            raise AssertionError("the watchdog never read a garbled bath in 40 tries")
        assert "over-temperature: chiller bath at 2" in ioc_log_lines(served, unconfirmed)[-1]
        assert served.get("STATE") == "INIT"
        fault_time = time.monotonic()
        chiller.set_faults("misread=100000")  # from now on every reading is over the limit
        wait_until(lambda: served.get("STATE") == "SAFE", 5.0, "SAFE on a real over-temperature")
        print(f"over-temperature to SAFE: {time.monotonic() - fault_time:.2f} s")
        assert "over-temperature: chiller bath at 2" in served.get("STATE:REASON")
    finally:
        chiller.set_faults("misread=0")
        served.reset()


def test_a_stalled_ioc_reports_no_lost_link_and_a_hung_instrument_still_does(
    served: Served,
) -> None:
    """The IOC stopped (SIGSTOP) for longer than `interlocks.link_timeout` while the coldbox
    stops answering: the HV supply's and the chiller's answers wait in the IOC's sockets, so
    after SIGCONT their links are not lost; the coldbox's is, `link_timeout` s of the IOC's
    running time later (ERROR naming the coldbox only)."""
    pid = served.ioc.process.pid if served.ioc.process else 0
    link_timeout = served.limits.link_timeout
    wait_until(lambda: served.get("STATE") == "INIT", 10, "INIT")
    try:
        served.sims["coldbox"].set_faults("hang")
        os.kill(pid, signal.SIGSTOP)
        time.sleep(link_timeout + 2.0)
        os.kill(pid, signal.SIGCONT)
        resumed = time.monotonic()
        wait_until(lambda: served.get("STATE") == "ERROR", link_timeout + 10, "ERROR")
        assert time.monotonic() - resumed > link_timeout - 2.0  # judged on running time
        reason = served.get("STATE:REASON")
        assert "lost link to coldbox" in reason
        assert "lost link to hv" not in reason and "lost link to chiller" not in reason
    finally:
        os.kill(pid, signal.SIGCONT)
        served.sims["coldbox"].reset()
        served.reset()


def test_a_trip_fails_the_move_in_progress_at_once_and_says_why(served: Served) -> None:
    """A 500 V move put under way when the E-stop is pressed fails at once, and the slot's MSG
    says that the trip cancelled it (it does not wait out its ramp's deadline)."""
    estop, switch = served.context.get_pvs(PREFIX + "ESTOP", PREFIX + "HV:CH0:SWITCHED_ON")
    for pv in (estop, switch):
        pv.wait_for_connection(timeout=10)
    history = History(served.sims)
    served.put("CONTROL:TAKEOVER", "pid=test")
    try:
        served.put("STATE:CMD", "READY test")
        served.put("STATE:CMD", "RUN test")
        switch.write([1], wait=True, timeout=10)
        served.pvs["SLOT1:BIAS_SETPOINT"].write([500.0], wait=False)  # a move: its put waits
        wait_until(lambda: history.sample().hv_max > 20, 30, "the ramp under way")
        estop.write([1], wait=True, timeout=10)
        took = wait_until(
            lambda: "cancelled: the stand went SAFE" in served.get("SLOT1:MSG"), 10, "the why"
        )
        assert took < 5.0
        wait_until(lambda: history.sample().hv_max < 2.0, 30, "HV down")
    finally:
        history.stop()
        estop.write([0], wait=True, timeout=10)
        served.reset()
