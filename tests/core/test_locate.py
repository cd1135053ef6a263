"""Finding the stand file and the profile from any folder: --stand, $TESTSTAND_STAND, the user's
config file, else the simulated stand and the profile shipped with the package."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from teststand.app.locate import (
    STAND_ENV,
    StandNotFound,
    find_profile,
    find_stand,
    shipped_profile,
)
from teststand.config import load_stand

TESTSTAND = str(Path(sys.executable).parent / "teststand")


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder outside the repository, a home without teststand settings."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(STAND_ENV, raising=False)
    monkeypatch.delenv("TESTSTAND_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return tmp_path


def test_the_profile_and_the_simulated_stand_ship_with_the_package(elsewhere: Path) -> None:
    profile = shipped_profile()
    assert (profile / "startup" / "10_stand.py").is_file()
    for name in ("existing_plans_and_devices.yaml", "user_group_permissions.yaml"):
        assert (profile / name).is_file()
    assert find_profile() == profile
    assert find_stand() == profile / "stand.yaml"
    assert load_stand(find_stand()).sim


def test_the_order_of_the_places_looked_at(
    elsewhere: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = elsewhere / "mine.yaml"
    mine.write_text((shipped_profile() / "stand.yaml").read_text())
    config = elsewhere / "config" / "teststand" / "config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("stand: ../../mine.yaml\n")  # relative to the config file
    assert find_stand() == mine
    other = elsewhere / "other.yaml"
    other.write_text(mine.read_text())
    monkeypatch.setenv(STAND_ENV, str(other))
    assert find_stand() == other
    assert find_stand("mine.yaml") == mine


def test_a_missing_stand_file_says_where_it_looked(
    elsewhere: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(StandNotFound) as failed:
        find_stand("nothere.yaml")
    message = str(failed.value)
    assert f"--stand nothere.yaml: {elsewhere / 'nothere.yaml'} does not exist" in message
    assert "$TESTSTAND_STAND" in message and str(elsewhere / "config") in message
    monkeypatch.setenv(STAND_ENV, "gone.yaml")
    with pytest.raises(StandNotFound, match=r"\$TESTSTAND_STAND=gone.yaml: .* does not exist"):
        find_stand()
    with pytest.raises(StandNotFound, match="has no startup/ directory"):
        find_profile(elsewhere)


def test_commands_work_from_another_folder(elsewhere: Path) -> None:
    """`queue status` finds the stand (and so its queue server's state) from any folder."""
    env = {**os.environ, "HOME": str(elsewhere), "XDG_CONFIG_HOME": str(elsewhere / "config")}
    env.pop(STAND_ENV, None)
    done = subprocess.run(
        [TESTSTAND, "queue", "status"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=elsewhere,
        env=env,
    )
    assert done.returncode == 1
    assert "the queue server of" in done.stderr and "is not running" in done.stderr, done.stderr
    assert str(elsewhere / "teststand-data" / "qserver") in done.stderr
