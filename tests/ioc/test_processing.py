"""Processing devices and collectors in processes of their own, on loopback CA.

The shipped functions' values are checked in tests/collect; here the serving: the inputs come
from a stand-in for another lab's IOC (`ca_source.py`, killed and restarted to
disconnect them) and from the session's served stand; the collector and the processing device
are started, killed and started again by the factory while the stand serves.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bluesky import RunEngine
from bluesky.run_engine import call_in_bluesky_event_loop
from caproto import AlarmSeverity, AlarmStatus
from caproto.sync.client import read, write
from conftest import PREFIX, SIDE_PORTS, TESTSTAND, Ioc, SideServer, wait_for
from ophyd_async.plan_stubs import ensure_connected

from teststand.app.collector import factory
from teststand.collect.device import Processed
from teststand.stand.ca import StaleValue

SOURCE = str(Path(__file__).with_name("ca_source.py"))
RATIO = """
from teststand.collect.processing import Output, processing


@processing(inputs=("numerator", "denominator"), outputs={"RATIO": Output("", 3)})
def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator
"""


def get(pv: str, data_type: str | None = None) -> Any:
    return read(pv, data_type=data_type, timeout=5, repeater=False)


def value(pv: str) -> float:
    return float(get(pv).data[0])


def alarm(pv: str) -> tuple[AlarmStatus, AlarmSeverity]:
    metadata = get(pv, "time").metadata
    return AlarmStatus(metadata.status), AlarmSeverity(metadata.severity)


def text(pv: str) -> str:
    return bytes(get(pv).data).rstrip(b"\0").decode()


def source() -> SideServer:
    command = [sys.executable, SOURCE, "SRC:", "T=20", "RH=50", "NUM=6", "DEN=3"]
    return SideServer(command, SIDE_PORTS[1])


@pytest.fixture
def processes() -> Iterator[list[SideServer]]:
    started: list[SideServer] = []
    yield started
    for process in started:
        process.stop()


def test_outputs_follow_inputs_and_alarm_on_disconnect_and_on_a_raising_function(
    RE: RunEngine, tmp_path: Path, processes: list[SideServer]
) -> None:
    processes.append(source())
    ratio_file = tmp_path / "ratio.py"
    ratio_file.write_text(RATIO)
    ratio = [TESTSTAND, "processing", "serve", f"{ratio_file}:ratio", "--prefix", "R:"]
    ratio += ["--input", "numerator=SRC:NUM", "--input", "denominator=SRC:DEN"]
    processes.append(SideServer([*ratio, "--interfaces", "127.0.0.1"], SIDE_PORTS[3]))

    wait_for(lambda: value("R:RATIO") == pytest.approx(2.0), 20, "the ratio")
    assert alarm("R:RATIO")[1] == AlarmSeverity.NO_ALARM
    write("SRC:NUM", 9.0, notify=True, repeater=False)
    wait_for(lambda: value("R:RATIO") == pytest.approx(3.0), 10, "the ratio follows")
    device = Processed("R:", ["RATIO"], name="r")
    RE(ensure_connected(device))
    assert call_in_bluesky_event_loop(device.read())["r-ratio"]["value"] == pytest.approx(3.0)
    write("SRC:DEN", 0.0, notify=True, repeater=False)
    wait_for(lambda: alarm("R:RATIO") == (AlarmStatus.CALC, AlarmSeverity.MAJOR_ALARM), 10, "CALC")
    assert text("R:MSG").startswith("ZeroDivisionError")
    write("SRC:DEN", 4.0, notify=True, repeater=False)
    wait_for(lambda: value("R:RATIO") == pytest.approx(2.25), 10, "it keeps running")
    assert alarm("R:RATIO")[1] == AlarmSeverity.NO_ALARM and text("R:MSG") == ""

    processes[0].stop()  # the other lab's IOC goes away
    wait_for(lambda: alarm("R:RATIO")[1] == AlarmSeverity.INVALID_ALARM, 20, "INVALID")
    assert "disconnected" in text("R:MSG") and "(SRC:" in text("R:MSG")
    with pytest.raises(StaleValue):  # never read as a value
        call_in_bluesky_event_loop(device.read())
    processes.append(source())  # back, with its start values
    wait_for(lambda: value("R:RATIO") == pytest.approx(2.0), 60, "the ratio after the restart")
    assert alarm("R:RATIO")[1] == AlarmSeverity.NO_ALARM


def test_collector_and_processing_restart_without_disturbing_anything(
    ioc: Ioc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TESTSTAND_COLLECTOR_DIR", str(tmp_path))
    local = ["--interfaces", "127.0.0.1"]
    recorded = ["--pv", f"{PREFIX}COLDBOX:TEMPERATURE", "--pv", f"{PREFIX}SLOT2:TEMPERATURE"]
    collector = ["rec", "--prefix", "REC:", *recorded, "--publish", "0.1", *local]
    margin = ["plate-margin", "--prefix", "MARGIN:", "--option", "limit=1000", *local]
    margin += ["--input", f"dew_point={PREFIX}COLDBOX:DEW_POINT"]
    margin += ["--input", f"plate1={PREFIX}SLOT1:TEMPERATURE"]
    margin += ["--input", f"plate2={PREFIX}SLOT2:TEMPERATURE"]

    def new(kind: str, name: str, prefix: str, arguments: list[str], port: int) -> Any:
        env = {"EPICS_CA_SERVER_PORT": str(port)}  # a CA server port of its own
        return factory.start(kind, name, prefix, arguments, env=env)

    try:
        rec = new("collector", "rec", "REC:", collector, SIDE_PORTS[4])
        new("processing", "margin", "MARGIN:", margin, SIDE_PORTS[5])
        listing = subprocess.run(
            [TESTSTAND, "collector", "list"], capture_output=True, text=True, check=True
        ).stdout
        assert "rec\tcollector\tREC:" in listing and "margin\tprocessing\tMARGIN:" in listing

        wait_for(lambda: value("MARGIN:COUNT") > 0, 20, "the margins")
        plates = [value(f"{PREFIX}SLOT{n}:TEMPERATURE") for n in (1, 2)]
        dew = value(f"{PREFIX}COLDBOX:DEW_POINT")
        assert value("MARGIN:MIN_MARGIN") == pytest.approx(min(plates) - dew, abs=0.5)
        assert value("MARGIN:PLATE2_MARGIN") == pytest.approx(plates[1] - dew, abs=0.5)
        assert alarm("MARGIN:MIN_MARGIN") == (AlarmStatus.LOLO, AlarmSeverity.MAJOR_ALARM)
        assert get("MARGIN:MIN_MARGIN", "control").metadata.units == b"K"
        wait_for(lambda: value("REC:NSAMPLES") > 4, 20, "recorded samples")

        os.kill(rec.pid, signal.SIGKILL)  # the collector dies
        count = value("MARGIN:COUNT")
        wait_for(lambda: value("MARGIN:COUNT") > count + 3, 20, "the processing goes on")
        assert value(f"{PREFIX}SLOT1:BIAS") is not None  # so does the IOC
        assert not next(e for e in factory.entries() if e.name == "rec").running

        new("collector", "rec", "REC:", collector, SIDE_PORTS[4])  # and resumes
        wait_for(lambda: value("REC:NSAMPLES") > 4, 20, "recording after the restart")

        factory.stop("margin")
        new("processing", "margin", "MARGIN:", margin, SIDE_PORTS[5])
        wait_for(lambda: value("MARGIN:COUNT") > 0, 20, "the margins after the restart")
        samples = value("REC:NSAMPLES")
        wait_for(lambda: value("REC:NSAMPLES") > samples, 20, "the collector went on")
    finally:
        for entry in factory.entries():
            factory.stop(entry.name)
    assert factory.entries() == []
