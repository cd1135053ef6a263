"""Pixel analysis in its own process behind the 0MQ proxy: killing it spares acquisition."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.plans as bp
import pytest
from bluesky import RunEngine
from bluesky.callbacks.zmq import Publisher
from helpers import free_port, run
from ophyd_async.core import init_devices

from teststand.devices.timepix3 import Timepix3
from teststand.sim.runner import start_simulator
from teststand.sim.timepix3_matrix import Source

BIN = Path(sys.executable).parent


def analysis_process(proxy_out: int, out: Path) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "teststand.app.cli", "analysis", "serve"]
    command += ["--proxy", f"127.0.0.1:{proxy_out}", "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], 60)
    if not ready or "listening" not in process.stdout.readline():
        process.kill()
        raise AssertionError("`teststand analysis serve` did not start listening within 60 s")
    return process


@pytest.fixture
def proxy() -> Iterator[tuple[int, int]]:
    ports = free_port(), free_port()
    process = subprocess.Popen([str(BIN / "bluesky-0MQ-proxy"), *map(str, ports)])
    yield ports
    process.terminate()
    process.wait(10)


def analysed(RE: RunEngine, det: Timepix3, out: Path, frames: int) -> tuple[str, dict[str, Any]]:
    """Runs until the analysis reports one (its subscription needs a moment to join)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        (uid,) = RE(bp.count([det], frames)).run_start_uids
        for _ in range(40):
            if (out / f"{uid}.json").exists():
                return uid, json.loads((out / f"{uid}.json").read_text())
            time.sleep(0.1)
    raise AssertionError("the analysis process never reported a run")


def test_killing_the_analysis_neither_stops_nor_slows_acquisition(
    RE: RunEngine, proxy: tuple[int, int], tmp_path: Path
) -> None:
    out = tmp_path / "results"
    analysis = analysis_process(proxy[1], out)
    publisher = Publisher(("127.0.0.1", proxy[0]))
    RE.subscribe(publisher)
    with start_simulator("timepix3", transport="tcp", speed=5.0) as sim:
        sim.host.call(lambda: setattr(sim.instrument.matrix, "source", Source("beta", 20_000)))
        with init_devices():
            det = Timepix3(f"tcp://{sim.address}", tmp_path / "data", name="tpx")
        try:
            RE(bps.mv(det.shutter_time, 0.05))
            _, result = analysed(RE, det, out, 3)
            assert result["hits"] > 0 and result["clusters"] < result["hits"], (
                result
            )  # beta clusters
            assert result["collections"] == 3

            frame_times: list[float] = []

            def kill_midway(name: str, doc: dict[str, Any]) -> None:
                if name == "event":
                    frame_times.append(time.monotonic())
                    if doc["seq_num"] == 4:
                        os.kill(analysis.pid, signal.SIGKILL)

            (killed_uid,) = RE(bp.count([det], 8), kill_midway).run_start_uids
            analysis.wait(10)
            before = frame_times[3] - frame_times[0]
            after = frame_times[7] - frame_times[4]
            assert len(frame_times) == 8  # the run went on to its end
            assert after < 2 * before + 1.0  # and no slower (generous: a loaded machine)
            assert not (out / f"{killed_uid}.json").exists()

            analysis = analysis_process(proxy[1], out)  # restarted: resumes with the next run
            _, result = analysed(RE, det, out, 1)
            assert result["collections"] == 1
        finally:
            analysis.kill()
            analysis.wait(10)
            run(RE, det.close)
            publisher._socket.close(linger=0)  # unsent documents must not hold up the exit
            publisher.close()
