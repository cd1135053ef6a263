"""The IPython profile: it loads in a plain IPython, `teststand shell` starts it, a bad stand file
stops it with its message, and the committed list of plans and devices is what it offers."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PROFILE = REPO / "profile_collection"
DEVICES = ["stand", "hv", "chiller", "coldbox", "smu", "lv1", "lv2"] + [
    f"slot{n}" for n in range(1, 9)
]
PLANS = [
    "iv_scan",
    "keithley_iv_scan",
    "hv_ramp",
    "hv_off",
    "set_temperature",
    "thermal_cycle",
    "long_term_stability",
    "module_qualification",
    "threshold_scan",
    "trim_equalisation",
    "source_scan",
    "bias_scan_with_detector",
]

#: Storage on a Tiled server that is not there: no run is made, and no embedded server starts.
NO_TILED = {"tiled": "http://127.0.0.1:9", "data_dir": "data"}


def ipython(stand: Path, code: str, *command: str) -> subprocess.CompletedProcess[str]:
    """Run `code` in IPython with the profile (by default `ipython --profile-dir=...`)."""
    command = command or (sys.executable, "-m", "IPython", f"--profile-dir={PROFILE}")
    return subprocess.run(
        [*command, "--HistoryManager.hist_file=:memory:", "--colors=nocolor", "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "TESTSTAND_STAND": str(stand)},
        cwd=stand.parent,
        timeout=120,
    )


def test_the_profile_loads_in_a_plain_ipython(fast_stand: Path) -> None:
    code = (
        "import bluesky; print('NAMES', sorted(k for k in dir() if not k.startswith('_'))); "
        "print('AUTOAWAIT', get_ipython().autoawait); print('RE', type(RE).__name__, "
        "type(catalog).__name__, stand.config.speed, slot1.name, iv_scan.__name__, "
        "len(RE.suspenders))"
    )
    done = ipython(fast_stand, code)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr
    names = next(line for line in done.stdout.splitlines() if line.startswith("NAMES"))
    for name in ["RE", "catalog", "writer", "analysis", "live_display", *DEVICES, *PLANS]:
        assert f"'{name}'" in names, name
    # Nothing that could bypass the stand's limits is in the namespace.
    for name in ["mv", "mvr", "abs_set", "scan", "count", "bps", "bp"]:
        assert f"'{name}'" not in names, name
    assert "AUTOAWAIT False" in done.stdout
    assert "RE RunEngine SessionCatalog 500.0 slot1 iv_scan 3" in done.stdout


def test_teststand_shell_starts_the_profile(
    tmp_path: Path, stand_copy: Callable[..., Path]
) -> None:
    stand = stand_copy(tmp_path, storage=NO_TILED)
    teststand = str(Path(sysconfig.get_path("scripts")) / "teststand")
    shell = [teststand, "shell", "--profile", str(PROFILE), "--stand", str(stand), "--"]
    done = subprocess.run(
        [*shell, "--HistoryManager.hist_file=:memory:", "-c", "print('SHELL', stand.config.name)"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "TESTSTAND_STAND"},
    )
    assert done.returncode == 0, done.stderr
    assert "SHELL sim-stand" in done.stdout, done.stdout + done.stderr


def test_shell_refuses_a_directory_without_startup(tmp_path: Path) -> None:
    teststand = str(Path(sysconfig.get_path("scripts")) / "teststand")
    done = subprocess.run(
        [teststand, "shell", "--profile", str(tmp_path)], capture_output=True, text=True
    )
    assert done.returncode == 1
    assert f"{tmp_path} has no startup/ directory" in done.stderr


def test_a_stand_file_with_errors_stops_the_profile_with_its_message(
    tmp_path: Path, stand_copy: Callable[..., Path]
) -> None:
    bad = stand_copy(tmp_path, limits={"compliance": -1})
    done = ipython(bad, "print('STAND' if 'stand' in dir() else 'NO STAND', 'RE' in dir())")
    output = done.stdout + done.stderr
    assert "ProfileLoadError: ConfigError: stand file" in output, output
    assert "limits.compliance" in output
    assert "Traceback" not in output  # the message, not a traceback
    assert "NO STAND True" in done.stdout


def test_the_committed_list_of_plans_and_devices_is_current(
    tmp_path: Path, stand_copy: Callable[..., Path]
) -> None:
    stand = stand_copy(tmp_path, storage=NO_TILED)  # the devices of profile_collection/stand.yaml
    fresh = list_plans_and_devices(stand, tmp_path)
    committed = yaml.safe_load((PROFILE / "existing_plans_and_devices.yaml").read_text())
    if fresh != committed:
        changed = sorted(
            f"{kind}.{name}"
            for kind in ("existing_plans", "existing_devices")
            for name in fresh[kind].keys() | committed[kind].keys()
            if fresh[kind].get(name) != committed[kind].get(name)
        )
        pytest.fail(
            "profile_collection/existing_plans_and_devices.yaml is out of date (differs in "
            f"{', '.join(changed)}); regenerate it from the repository root with\n"
            "  qserver-list-plans-devices --startup-dir profile_collection/startup "
            "--file-dir profile_collection\nand commit it"
        )
    assert sorted(committed["existing_plans"]) == sorted(PLANS)
    assert set(DEVICES) <= set(committed["existing_devices"])


def test_a_stand_with_a_pixel_detector_offers_it_and_the_pixel_plans(
    tmp_path: Path, stand_copy: Callable[..., Path]
) -> None:
    instruments = yaml.safe_load((PROFILE / "stand.yaml").read_text())["instruments"]
    instruments["tpx"] = {"kind": "timepix3", "simulator": {"options": {"bias_from": "hv:0"}}}
    stand = stand_copy(tmp_path, storage=NO_TILED, instruments=instruments)
    listed = list_plans_and_devices(stand, tmp_path)
    assert {"threshold_scan", "source_scan"} <= set(listed["existing_plans"])
    detector = listed["existing_devices"]["tpx"]
    assert detector["classname"] == "Timepix3" and detector["is_readable"] is True
    assert {"threshold", "shutter_time", "last_hit_count"} <= set(detector["components"])


def list_plans_and_devices(stand: Path, directory: Path) -> dict[str, Any]:
    """What `qserver-list-plans-devices` finds in the profile's startup with `stand`."""
    lister = Path(sysconfig.get_path("scripts")) / "qserver-list-plans-devices"
    subprocess.run(
        [str(lister), "--startup-dir", str(PROFILE / "startup"), "--file-dir", str(directory)],
        check=True,
        capture_output=True,
        env={**os.environ, "TESTSTAND_STAND": str(stand)},
        cwd=directory,
        timeout=120,
    )
    listed: dict[str, Any] = yaml.safe_load(
        (directory / "existing_plans_and_devices.yaml").read_text()
    )
    return listed


def test_the_operator_group_may_run_every_plan_of_the_profile() -> None:
    permissions = yaml.safe_load((PROFILE / "user_group_permissions.yaml").read_text())
    groups = permissions["user_groups"]
    assert set(PLANS) <= set(groups["primary"]["allowed_plans"])
    assert groups["observer"]["allowed_plans"] == []
    assert groups["primary"]["allowed_devices"] == []
