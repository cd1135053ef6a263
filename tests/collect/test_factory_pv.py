"""The factory as PVs (`teststand collector factory`): a collector and a processing device made
by puts to NEW, each its own process on a CA port of its own, listed in LIST (and by `teststand
collector list`), stopped by a put to STOP; bad requests refused with the reason in MSG."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from caproto import ErrorResponseReceived
from caproto.sync.client import read, write
from helpers import CA

from teststand.app.collector import factory

FAC = "TFAC:"


def get(pv: str) -> Any:
    return read(pv, timeout=10, repeater=False)


def text(pv: str) -> str:
    return bytes(get(pv).data).rstrip(b"\0").decode()


def put(pv: str, value: str) -> None:
    write(pv, value.encode() + b"\0", notify=True, timeout=90, repeater=False)


def listing() -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in json.loads(text(f"{FAC}LIST"))}


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.fixture
def factory_ioc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    monkeypatch.setenv("TESTSTAND_COLLECTOR_DIR", str(tmp_path / "registry"))
    env = dict(os.environ)
    ports = [CA.lease() for _ in range(3)]
    command = [sys.executable, "-m", "teststand.app.cli", "collector", "factory"]
    command += ["--prefix", FAC, "--interfaces", "127.0.0.1", "--ports", *map(str, ports[1:])]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, text=True, env={**env, **CA.server_environment(ports[0])}
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().startswith("serving"), "the factory did not start"
        yield ports[1:]
    finally:
        process.terminate()
        process.wait(20)
        for entry in factory.entries():  # what it started outlives it
            factory.stop(entry.name)
        for port in ports:
            CA.release(port)


def test_collectors_and_processing_devices_made_listed_and_stopped_by_pvs(
    factory_ioc: list[int],
) -> None:
    ports = factory_ioc
    collector = {"name": "fcol", "prefix": "TFCOL:", "pvs": [f"{FAC}COUNT"], "publish": 0.1}
    put(f"{FAC}NEW", json.dumps(collector))  # completes once it serves
    assert "collector fcol serves TFCOL:" in text(f"{FAC}MSG")
    assert text("TFCOL:1:NAME") == f"{FAC}COUNT"
    assert get("TFCOL:STATE").data[0] == b"RECORDING"
    dew_point = {"kind": "dew-point", "name": "fdp", "prefix": "TFDP:"}
    dew_point["inputs"] = {"temperature": "TFCOL:START", "humidity": "TFCOL:NPVS"}
    put(f"{FAC}NEW", json.dumps(dew_point))
    get("TFDP:DEW_POINT")
    entries = listing()
    assert {n: (e["kind"], e["running"]) for n, e in entries.items()} == {
        "fcol": ("collector", True),
        "fdp": ("processing", True),
    }
    assert sorted(e["port"] for e in entries.values()) == sorted(ports)  # a port each
    wait_for(lambda: get(f"{FAC}COUNT").data[0] == 2, 10, "COUNT 2")
    wait_for(lambda: get("TFCOL:1:NSAMPLES").data[0] >= 1, 10, "COUNT recorded")
    shared = {(e.name, e.kind, e.prefix) for e in factory.entries()}  # `collector list`'s
    assert shared == {("fcol", "collector", "TFCOL:"), ("fdp", "processing", "TFDP:")}

    for bad, reason in (
        ("not json", "not JSON"),
        (json.dumps({**collector, "name": "x", "colour": 1}), "unknown settings ['colour']"),
        (json.dumps({**collector, "name": "y", "prefix": "TFY:", "length": 0}), "length"),
        (json.dumps({**collector, "name": "z"}), "already serves TFCOL:"),  # its prefix
        (json.dumps({**collector, "name": "w", "prefix": "TFW:"}), "ports"),  # none left
    ):
        with pytest.raises(ErrorResponseReceived):
            put(f"{FAC}NEW", bad)
        assert reason in text(f"{FAC}MSG"), (bad, text(f"{FAC}MSG"))

    put(f"{FAC}STOP", "fcol")
    assert "stopped collector fcol" in text(f"{FAC}MSG")
    assert set(listing()) == {"fdp"}
    with pytest.raises(ErrorResponseReceived):
        put(f"{FAC}STOP", "fcol")
    assert "no collector or processing device named 'fcol'" in text(f"{FAC}MSG")
