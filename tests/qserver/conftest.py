"""A real Redis (the embedded redis-server on a free port) and a tiny profile for the manager."""

from __future__ import annotations

import os
import subprocess
import sysconfig
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from queue_helpers import PROFILE, Manager

from teststand.app.ioc.process import SimulatorProcess
from teststand.app.qserver import (
    Component,
    QserverOptions,
    free_port,
    start,
    start_redis,
    stop,
    stop_component,
)

REPO = Path(__file__).resolve().parents[2]

STARTUP = """
import os
from pathlib import Path

from bluesky import RunEngine
from bluesky.plans import count  # noqa: F401
from ophyd_async.core import StandardReadable, init_devices, soft_signal_rw

RE = RunEngine()


class Sensor(StandardReadable):
    def __init__(self, name: str = "") -> None:
        with self.add_children_as_readables():
            self.value = soft_signal_rw(float, initial_value=1.5, units="V")
        super().__init__(name=name)


with init_devices():
    sensor = Sensor()

# Show the test which stand file the worker was given.
if os.environ.get("TESTSTAND_STAND"):
    Path(os.environ["TESTSTAND_STAND"]).with_suffix(".seen").write_text(
        os.environ["TESTSTAND_STAND"]
    )
"""

PERMISSIONS = {
    "user_groups": {
        "root": {
            "allowed_plans": [None],
            "forbidden_plans": [":^_"],
            "allowed_devices": [None],
            "forbidden_devices": [":^_:?.*"],
            "allowed_functions": [None],
            "forbidden_functions": [":^_"],
        },
        "primary": {
            "allowed_plans": [":^count$"],
            "forbidden_plans": [None],
            "allowed_devices": [":?.*:depth=3"],
            "forbidden_devices": [None],
            "allowed_functions": [None],
            "forbidden_functions": [None],
        },
    }
}


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Component]:
    """The embedded redis-server, started by teststand.app.qserver on a free (non-default) port."""
    redis = start_redis(tmp_path_factory.mktemp("redis"), free_port())
    yield redis
    stop_component(redis)
    assert not redis.alive


@pytest.fixture(scope="session")
def profile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """startup/ (a RunEngine, `count`, a soft-signal device), the lists and a stand file."""
    root = tmp_path_factory.mktemp("profile")
    (root / "startup").mkdir()
    (root / "startup" / "00_base.py").write_text(STARTUP)
    (root / "user_group_permissions.yaml").write_text(yaml.safe_dump(PERMISSIONS))
    stand = yaml.safe_load((REPO / "profile_collection" / "stand.yaml").read_text())
    stand["storage"] = {"data_dir": str(root / "data")}
    (root / "stand.yaml").write_text(yaml.safe_dump(stand))
    lister = Path(sysconfig.get_path("scripts")) / "qserver-list-plans-devices"
    environment = {k: v for k, v in os.environ.items() if k != "TESTSTAND_STAND"}
    subprocess.run(
        [str(lister), "--startup-dir", str(root / "startup"), "--file-dir", str(root)],
        check=True,
        capture_output=True,
        env=environment,
        timeout=60,
    )
    assert "sensor" in (root / "existing_plans_and_devices.yaml").read_text()
    return root


def _stand_copy(directory: Path, name: str = "stand.yaml", **changes: Any) -> Path:
    """profile_collection/stand.yaml sped up (speed 500) with its data under `directory`."""
    stand = yaml.safe_load((REPO / "profile_collection" / "stand.yaml").read_text())
    stand.update({"speed": 500, "storage": {"data_dir": str(directory / "data")}, **changes})
    path = directory / name
    path.write_text(yaml.safe_dump(stand))
    return path


@pytest.fixture(scope="session")
def stand_copy() -> Callable[..., Path]:
    """`stand_copy(directory, name="stand.yaml", **changes)`: a sped-up copy of the profile's
    simulated stand (speed 500) storing under `directory`, with top-level keys changed."""
    return _stand_copy


@pytest.fixture(scope="session")
def fast_stand(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The profile's simulated stand, sped up, storing into a temporary directory."""
    return _stand_copy(tmp_path_factory.mktemp("fast-stand"))


@pytest.fixture(scope="module")
def served_stand(
    tmp_path_factory: pytest.TempPathFactory, stand_copy: Callable[..., Path]
) -> Iterator[Path]:
    """A stand file whose instruments are simulators served over TCP by another process."""
    directory = tmp_path_factory.mktemp("served")
    simulated = stand_copy(directory, "simulated.yaml")
    server = SimulatorProcess(simulated, cwd=directory)
    config = yaml.safe_load(simulated.read_text())
    config["sim"] = False
    for name, url in server.urls.items():
        config["instruments"][name].update(url=url, options={})
    served = directory / "stand.yaml"
    served.write_text(yaml.safe_dump(config))
    yield served
    server.stop(30)


@pytest.fixture(scope="module")
def manager(
    served_stand: Path, redis_server: Component, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Manager]:
    """The RE Manager with profile_collection/ (its startup, lists and permissions)."""
    state_dir = tmp_path_factory.mktemp("manager")
    options = QserverOptions(
        profile=PROFILE,
        stand=served_stand,
        state_dir=state_dir,
        redis=redis_server.address,
        redis_prefix="qs_profile",  # its own queue on the session's Redis
        control_port=free_port(),
        info_port=free_port(),
    )
    start(options)
    yield Manager(state_dir, served_stand)
    stop(state_dir, force=True)
