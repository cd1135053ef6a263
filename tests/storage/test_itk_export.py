"""`teststand export itk`: IV runs of the simulated stand, stored with both analyses in a real
Tiled server, exported as ITk measurement files; the official command-line analysis
(module-qc-analysis-tools' `analysis-IV-MEASURE`, its own process) must accept them and reproduce
the stored official verdicts. The production database is not reached: payloads are written and
checked offline, and `--upload` is only tested for its missing-token refusal."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from bluesky import RunEngine
from helpers import run, stand_dict

from teststand.app.cli import main
from teststand.callbacks.iv_analysis import IVAnalysis
from teststand.callbacks.tiled_writer import LiveTiledWriter
from teststand.plans import iv_scan
from teststand.stand import build
from teststand.storage.embedded import EmbeddedServer

GOOD, EARLY, TRIPLET = "20UPGM22110001", "20UPGM22110003", "20UPIMS2110004"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    with EmbeddedServer(tmp_path_factory.mktemp("itk-tiled")) as server:
        server.wait_ready(60)
        yield server


@pytest.fixture(scope="module")
def stored(server: EmbeddedServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """IV runs of slots 1 (good), 3 (early breakdown), 4 (3D), one too short, one at TEST."""
    folder = tmp_path_factory.mktemp("itk-stand")
    data = stand_dict(200.0, itk={"institution": "CERN"})
    data["storage"] = {"tiled": server.url, "api_key": server.api_key}
    stand_file = folder / "stand.yaml"
    stand_file.write_text(yaml.safe_dump(data))
    RE = RunEngine(call_returns_result=True)
    stand = build(data)
    writer = LiveTiledWriter(server.client, folder / "journal", flush_interval=0.05)
    analysis = IVAnalysis(publish=writer.annotate, itk=stand.config.itk)
    RE.subscribe(writer)
    RE.subscribe(analysis)
    uids: dict[str, str] = {}
    try:
        warm = RE(iv_scan(stand, [1, 3], 0, 200, 10, settle=0.005, stage="INITIAL_WARM"))
        uids[GOOD] = uids[EARLY] = warm.plan_result
        uids[TRIPLET] = RE(
            iv_scan(stand, [4], 0, 40, 2, settle=0.005, stage="INITIAL_WARM")
        ).plan_result
        RE(iv_scan(stand, [4], 0, 4, 1, settle=0.005, stage="INITIAL_COLD"))  # 5 points
        RE(iv_scan(stand, [1], 0, 50, 10, settle=0.005, stage="TEST"))
    finally:
        run(RE, stand.close)
    assert writer.wait(30)
    writer.close()
    return {"stand": stand_file, "summaries": analysis.summaries, "uids": uids, "server": server}


def stored_slot(stored: dict[str, Any], module: str) -> dict[str, Any]:
    """The module's INITIAL_WARM result as stored in Tiled (the run's metadata)."""
    run = stored["server"].client()[stored["uids"][module]]
    (slot,) = [s for s in run.metadata["analysis"]["slots"].values() if s["module_id"] == module]
    return dict(slot)


def export(stored: dict[str, Any], *args: str) -> int:
    return main(["export", "itk", *args, "--stand", str(stored["stand"])])


def test_exported_runs_pass_the_official_cli_with_the_stored_verdicts(
    stored: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "itk"
    assert export(stored, GOOD, "--out", str(out)) == 0
    assert export(stored, EARLY, "--out", str(out), "--stage", "INITIAL_WARM") == 0
    assert export(stored, TRIPLET, "--out", str(out), "--stage", "INITIAL_WARM") == 0
    printed = capsys.readouterr().out
    assert "nothing sent (add --upload to send)" in printed
    assert sorted(f.parent.name for f in out.glob("*/*.json")) == sorted([GOOD, EARLY, TRIPLET])
    (good,) = (out / GOOD).glob("*.json")  # the TEST run is not a stage of the ITk flow
    document = json.loads(good.read_text())
    frame = document[0][0]
    assert frame["serialNumber"] == GOOD and frame["testType"] == "IV_MEASURE"
    meta = frame["results"]["Metadata"]
    assert meta["Institution"] == "CERN" and meta["Stage"] == "INITIAL_WARM"
    assert json.loads(meta["SoftwareVersion"])["teststand"]
    measured = frame["results"]["Measurements"]
    assert measured["voltage"]["Values"][:3] == [0.0, 10.0, 20.0]
    assert len(measured["temperature"]["Values"]) == len(measured["voltage"]["Values"])
    assert len(measured["humidity"]["Values"]) == len(measured["voltage"]["Values"])
    for module in (GOOD, EARLY, TRIPLET):
        (measurement,) = (out / module).glob("*.json")
        cli = Path(sys.executable).with_name("analysis-IV-MEASURE")
        result = subprocess.run(
            [str(cli), "-i", str(measurement), "-o", str(tmp_path / "analysis" / module)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        (output,) = (tmp_path / "analysis" / module).glob("IV_MEASURE/*/*.json")
        (analysed,) = json.loads(output.read_text())
        stored_official = stored_slot(stored, module)["official"]
        assert analysed["passed"] == (stored_official["verdict"] == "pass"), module
        bd = analysed["results"]["BREAKDOWN_VOLTAGE"]
        assert (None if bd == -999 else bd) == stored_official["breakdown_voltage"], module
        leak = analysed["results"]["LEAK_CURRENT"]
        assert leak * 1e-6 == pytest.approx(stored_official["leakage_current"], rel=1e-2)
        payload = json.loads((out / module / "payloads" / measurement.name).read_text())
        assert payload["passed"] == analysed["passed"] and payload["stage"] == "MODULE/INITIAL_WARM"
        assert payload["results"]["BREAKDOWN_VOLTAGE"] == bd and payload["institution"] == "CERN"
    early = stored_slot(stored, EARLY)
    assert early["verdict"] == early["live_verdict"] == "fail" and not early["disagreement"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["M-0042"], "MODULE 'M-0042' is not an ITk serial number"),
        ([GOOD, "--stage", "TEST"], "stage 'TEST' is not a stage of the ITk module flow"),
        ([GOOD, "--stage", "BURN_IN"], "stage 'BURN_IN' is not a stage of the ITk module flow"),
        (
            [TRIPLET, "--stage", "INITIAL_COLD"],
            "has 5 valid IV point(s); the official IV_MEASURE analysis needs at least 6 for an "
            "L0 module",
        ),
        ([GOOD, "--upload"], "ITKDB_ACCESS_CODE1 and ITKDB_ACCESS_CODE2 are not set"),
    ],
)
def test_bad_input_is_refused_with_a_reason(
    stored: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    message: str,
) -> None:
    monkeypatch.delenv("ITKDB_ACCESS_CODE1", raising=False)
    monkeypatch.delenv("ITKDB_ACCESS_CODE2", raising=False)
    assert export(stored, *args, "--out", str(tmp_path)) == 1
    error = capsys.readouterr().err
    assert message in error
    assert not list(tmp_path.rglob("*.json"))  # nothing is written on a refusal
    if "INITIAL_COLD" in args:
        assert "IV run " in error and "(INITIAL_COLD, slot 4)" in error
