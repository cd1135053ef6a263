"""The stand built from a stand file: simulated, mocked, with its slots and hardware backstops."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bluesky.plans as bp
import pytest
from bluesky import RunEngine
from helpers import run

from teststand.config import load_stand
from teststand.stand import BiasLimitError, TestStand, build

ROOT = Path(__file__).resolve().parents[2]
STAND_FILE = ROOT / "profile_collection" / "stand.yaml"


def small_stand() -> dict[str, Any]:
    """Two occupied slots and one empty one on the simulated stand's instruments."""
    data = load_stand(STAND_FILE).model_dump(by_alias=True)
    data["slots"] = {
        1: {
            "hv": "hv:0",
            "lv": "lv1:1",
            "temperature": "coldbox:1",
            "module": {"id": "20UPGM22110011", "sensor": "planar"},
        },
        2: {"hv": "hv:1", "module": {"id": "20UPIMS2110012", "sensor": "3d"}},
        3: {"hv": "hv:2"},
    }
    return data


@pytest.fixture
def stand(RE: RunEngine) -> Iterator[TestStand]:
    built = build(small_stand())
    yield built
    run(RE, built.close)


def test_backstops_written_on_connect(RE: RunEngine, stand: TestStand) -> None:
    hv = stand.instruments["hv"]
    maxv = [run(RE, hv.channels[i].max_voltage.get_value) for i in range(8)]  # type: ignore[attr-defined]
    assert maxv[:2] == [250.0, 120.0]  # the stand file's limits per sensor type
    assert maxv[2:] == [0.0] * 6  # no module: nothing may bias it
    iset = run(RE, hv.channels[0].current_limit.get_value)  # type: ignore[attr-defined]
    assert iset == pytest.approx(100e-6)


def test_bias_above_the_slot_limit_is_refused_before_any_write(
    RE: RunEngine, stand: TestStand
) -> None:
    with pytest.raises(BiasLimitError, match=r"slot2: 150 V is outside 0\.\.120"):
        run(RE, lambda: stand.slots[2].set(150))
    with pytest.raises(BiasLimitError, match="holds no module"):
        run(RE, lambda: stand.slots[3].set(10))
    hv = stand.instruments["hv"]
    for channel in (1, 2):  # nothing was written: the set points are untouched
        assert run(RE, hv.channels[channel].setpoint.get_value) == 0  # type: ignore[attr-defined]


def test_slot_bias_ramps_its_channel(RE: RunEngine, stand: TestStand) -> None:
    slot = stand.slots[1]
    run(RE, lambda: slot.hv_channel.rate_up.set(200))
    run(RE, lambda: slot.hv_channel.on())
    run(RE, lambda: slot.set(100))
    assert abs(run(RE, slot.bias.get_value) - 100) < 2
    reading = run(RE, slot.read)
    assert reading["slot1-leakage_current"]["value"] > 0
    assert "slot1-temperature" in reading
    assert "slot1-lv_voltage" in reading
    run(RE, lambda: slot.hv_channel.off())


def test_count_over_the_whole_stand(RE: RunEngine, stand: TestStand) -> None:
    documents: list[tuple[str, dict[str, Any]]] = []
    RE(bp.count([stand], num=2), lambda name, doc: documents.append((name, doc)))
    (descriptor,) = [doc for name, doc in documents if name == "descriptor"]
    assert descriptor["data_keys"]["slot1"]["units"] == "V"
    configuration = descriptor["configuration"]["stand"]["data"]
    assert configuration["slot1-module_id"] == "20UPGM22110011"


def test_mock_stand_needs_no_instrument(RE: RunEngine) -> None:
    stand = build(STAND_FILE, mock=True)
    assert stand.simulators is None
    RE(bp.count([stand]))
    run(RE, lambda: stand.slots[4].set(100))
    with pytest.raises(BiasLimitError):
        run(RE, lambda: stand.slots[4].set(150))  # a 3D module: limit 120 V


def test_stand_check_groups_the_readings_and_sums_them_up() -> None:
    teststand = str(Path(sys.executable).with_name("teststand"))
    result = subprocess.run(
        [teststand, "stand", "check", str(STAND_FILE)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    headers = [line.split(":")[0] for line in lines if not line.startswith(" ")]
    assert headers[:6] == ["hv", "chiller", "coldbox", "smu", "lv1", "lv2"]
    assert headers[6:14] == [f"slot{n}" for n in range(1, 9)]
    assert any(line.startswith("smu: (readings not taken: ") for line in lines)  # output off
    slot8 = lines[lines.index("slot8:") + 1 :]
    assert any(line.split() == ["module_id", "20UPGM22110008"] for line in slot8)
    assert any(line.split()[0] == "bias" and line.endswith(" V") for line in slot8)
    assert any(line.split()[0] == "leakage_current" and line.endswith(" µA") for line in slot8)
    assert not any("e-0" in line for line in lines)  # no 1.234e-06 A: µA instead
    assert lines[-1].startswith("OK: all 14 devices answered")


def test_stand_check_reports_a_bad_stand_file(tmp_path: Path) -> None:
    bad = tmp_path / "stand.yaml"
    bad.write_text(
        "name: x\nsim: true\ninstruments: {hv: {kind: caen-dt8033}}\nslots: {1: {hv: 'hv:9'}}\n"
    )
    teststand = str(Path(sys.executable).with_name("teststand"))
    result = subprocess.run(
        [teststand, "stand", "check", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "slots.1.hv" in result.stderr
    assert "has no channel 9" in result.stderr


def test_build_before_a_runengine_says_to_create_one() -> None:
    """In a fresh script (its own process: a test session's RunEngines keep bluesky's loop
    running) build() without a RunEngine says what to do, not bluesky's "event loop not
    running"."""
    script = f"from teststand.stand import build; build({str(STAND_FILE)!r}, mock=True)"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 1
    assert "NoRunEngine: build() connects the devices on the RunEngine's event loop" in (
        result.stderr
    )
    assert "create the RunEngine first (RE = RunEngine())" in result.stderr
