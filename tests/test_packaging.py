"""The wheel holds one import package, `teststand`, with the design card's folders inside it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CARD_FOLDERS = {"devices", "plans", "callbacks", "sim"}


def test_wheel_maps_every_folder_under_teststand(tmp_path: Path) -> None:
    # Build from a clean copy of the sources, so that nothing stale under build/ gets in.
    source = tmp_path / "src"
    skip = shutil.ignore_patterns(".venv", "build", ".git", "*.egg-info", "__pycache__", ".*_cache")
    shutil.copytree(ROOT, source, ignore=skip)
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps"]
    command += ["--no-build-isolation", "--wheel-dir", str(tmp_path), str(source)]
    subprocess.run(command, check=True, capture_output=True, timeout=300, cwd=tmp_path)
    (wheel,) = tmp_path.glob("teststand-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_levels = {name.split("/")[0] for name in names if not name.endswith(".dist-info/")}
    assert {t for t in top_levels if not t.endswith(".dist-info")} == {"teststand"}
    # Every Python file of each folder lands at teststand/<folder>/…, none is forgotten.
    folders = {f"teststand/{folder}": ROOT / folder for folder in CARD_FOLDERS}
    folders["teststand"] = ROOT / "src" / "teststand"
    for inside_folder, folder in folders.items():
        for source in folder.rglob("*.py"):
            inside = f"{inside_folder}/{source.relative_to(folder).as_posix()}"
            assert inside in names, f"{source} is missing from the wheel"
    assert "teststand/py.typed" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert (
        "teststand = teststand.app.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
    )


@pytest.mark.parametrize("cwd", ["/", str(ROOT)], ids=["elsewhere", "repository-root"])
def test_installed_package_resolves_card_folders(cwd: str) -> None:
    """Python started anywhere, the repository root included, imports the installed package."""
    code = (
        "import teststand.devices, teststand.sim, teststand.plans, teststand.callbacks, sys;"
        "print(teststand.sim.__name__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert out.stdout.strip() == "teststand.sim"
