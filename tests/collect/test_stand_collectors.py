"""Collectors named in the stand file (`collectors:`, each with its host): served by `teststand
collector serve --stand FILE NAME` on that host (here: loopback), refused on another, their
settings checked when served."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from caproto.sync.client import read
from helpers import CA, stand_dict

from teststand.collect.config import check_host, stand_collector
from teststand.collect.device import stand_collectors
from teststand.collect.errors import CollectorError
from teststand.config import ConfigError, load_stand

COLLECTORS = {
    "box": {"host": "localhost", "prefix": "TSCOL:", "pvs": ["TSC:ELSEWHERE"], "length": 100},
    "far": {"host": "far-away.invalid", "prefix": "TSFAR:", "pvs": ["TS1:COLDBOX:TEMPERATURE"]},
    "bad": {"prefix": "TSBAD:", "pvs": ["TS1:COLDBOX:TEMPERATURE"], "length": 0},
}


@pytest.fixture
def stand_file(tmp_path: Path) -> Path:
    path = tmp_path / "stand.yaml"
    path.write_text(yaml.safe_dump(stand_dict(collectors=COLLECTORS)))
    return path


def test_a_collector_of_the_stand_file_serves_on_its_host(stand_file: Path) -> None:
    config, host = stand_collector(stand_file, "box", publish=0.1)
    assert (config.prefix, config.pvs, config.length, config.publish, host) == (
        "TSCOL:", ["TSC:ELSEWHERE"], 100, 0.1, "localhost"
    )  # fmt: skip
    port = CA.lease()
    command = [sys.executable, "-m", "teststand.app.cli", "collector", "serve"]
    command += ["--stand", str(stand_file), "box", "--interfaces", "127.0.0.1"]
    env = {**os.environ, **CA.server_environment(port)}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout is not None
        assert process.stdout.readline().startswith("serving TSCOL:")
        name = read("TSCOL:1:NAME", timeout=10, repeater=False)
        assert bytes(name.data).rstrip(b"\0") == b"TSC:ELSEWHERE"
        assert read("TSCOL:STATE", timeout=10, repeater=False).data[0] == b"RECORDING"
    finally:
        process.terminate()
        process.wait(20)
        CA.release(port)


def test_another_hosts_collector_and_bad_settings_are_refused(stand_file: Path) -> None:
    _, host = stand_collector(stand_file, "far")
    with pytest.raises(CollectorError, match=r"runs on far-away.invalid .* run `teststand"):
        check_host("far", host, stand_file)
    with pytest.raises(CollectorError, match="collector bad: length"):
        stand_collector(stand_file, "bad")
    with pytest.raises(CollectorError, match=r"no collector 'nope' .*bad, box, far"):
        stand_collector(stand_file, "nope")
    flyers = stand_collectors(load_stand(stand_file))  # for plans, wherever each one runs
    assert {name: (f.prefix, f.name) for name, f in flyers.items()} == {
        "box": ("TSCOL:", "box"), "far": ("TSFAR:", "far"), "bad": ("TSBAD:", "bad")
    }  # fmt: skip
    data = stand_dict(collectors={"x": {"host": "localhost", "pvs": ["A"]}})
    with pytest.raises(ConfigError, match=r"collectors\.x\.prefix"):
        load_stand(data)
