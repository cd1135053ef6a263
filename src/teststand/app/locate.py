"""Where the stand file and the IPython profile are, from any working directory.

The stand file: `--stand`, else `$TESTSTAND_STAND`, else `stand:` in the user's config file
(`$XDG_CONFIG_HOME/teststand/config.yaml`, by default `~/.config/teststand/config.yaml`), else
the simulated stand shipped with teststand. The profile (startup files, queue server lists and
permissions) ships with teststand too; `--profile` or `profile:` in the config file replace it.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from teststand.errors import TeststandError

#: The stand file to use, as a path; the queue server's worker gets it as an absolute path.
STAND_ENV = "TESTSTAND_STAND"
CONFIG_ENV = "TESTSTAND_CONFIG"


class StandNotFound(TeststandError, FileNotFoundError):
    """A named stand file or profile does not exist; the message says where it looked."""


def shipped_profile() -> Path:
    """The profile shipped with teststand (startup/, lists, permissions, the simulated stand)."""
    return Path(str(resources.files("teststand.profile_collection")))


def user_config_file() -> Path:
    """`$TESTSTAND_CONFIG`, else `$XDG_CONFIG_HOME/teststand/config.yaml`."""
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base).expanduser() / "teststand" / "config.yaml"


def _user_setting(key: str) -> tuple[Path, Path] | None:
    """(value as a path, the config file) of `key` in the user's config file, if set."""
    path = user_config_file()
    try:
        data: Any = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        return None
    except (OSError, yaml.YAMLError) as exc:
        raise StandNotFound(f"cannot read the teststand config file {path}: {exc}") from None
    if not isinstance(data, dict) or data.get(key) is None:
        return None
    value = Path(str(data[key])).expanduser()
    return (value if value.is_absolute() else path.parent / value), path


def find_stand(explicit: str | Path | None = None, profile: Path | None = None) -> Path:
    """The stand file to use, as an absolute path: `explicit`, `$TESTSTAND_STAND`, the
    `stand.yaml` of a `profile` other than the shipped one, the user's config file, the
    simulated stand shipped with teststand."""
    if explicit is not None:
        return _existing(Path(explicit), f"--stand {explicit}")
    if os.environ.get(STAND_ENV):
        return _existing(Path(os.environ[STAND_ENV]), f"${STAND_ENV}={os.environ[STAND_ENV]}")
    own = profile is not None and profile.resolve() != shipped_profile().resolve()
    if own and profile is not None and (profile / "stand.yaml").is_file():
        return (profile / "stand.yaml").resolve()
    setting = _user_setting("stand")
    if setting is not None:
        return _existing(setting[0], f"stand: {setting[0]} in {setting[1]}")
    return shipped_profile() / "stand.yaml"


def find_profile(explicit: str | Path | None = None) -> Path:
    """The profile directory: `--profile`, else `profile:` in the user's config file, else the
    profile shipped with teststand."""
    if explicit is not None:
        where, what = Path(explicit), f"--profile {explicit}"
    elif (setting := _user_setting("profile")) is not None:
        where, what = setting[0], f"profile: {setting[0]} in {setting[1]}"
    else:
        return shipped_profile()
    found = where.expanduser().resolve()
    if not (found / "startup").is_dir():
        raise StandNotFound(
            f"{what}: {found} has no startup/ directory; give the stand's profile directory "
            f"(teststand ships one: {shipped_profile()})"
        )
    return found


def _existing(path: Path, what: str) -> Path:
    resolved = path.expanduser().resolve()
    if not resolved.exists():
        raise StandNotFound(
            f"{what}: {resolved} does not exist. The stand file is looked for in this order: "
            f"--stand, ${STAND_ENV}, `stand:` in {user_config_file()}, then the simulated stand "
            f"shipped with teststand ({shipped_profile() / 'stand.yaml'})"
        )
    return resolved
