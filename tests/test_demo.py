"""`teststand demo --quick` end to end: simulated stand, RunEngine, embedded Tiled, analysis,
reports, summary table."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import CA

ROOT = Path(__file__).parents[1]
TESTSTAND = str(Path(sys.executable).parent / "teststand")


@pytest.mark.timeout(300)
def test_quick_demo_stores_analyses_and_writes_reports(tmp_path: Path) -> None:
    # the demo serves the stand with its own IOC: a server port of the session's CA, its prefix
    port = CA.lease()
    prefix = f"TSDEMO{os.getpid()}:"
    try:
        result = subprocess.run(
            [TESTSTAND, "demo", "--quick", "--data", str(tmp_path), "--prefix", prefix],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,  # any folder: the simulated stand ships with the package
            env={**os.environ, **CA.server_environment(port)},
        )
    finally:
        CA.release(port)
    assert result.returncode == 0, result.stderr
    assert f"caproto-monitor {prefix}SLOT3:BIAS" in result.stdout
    rows = {
        int(line.split()[0]): line
        for line in result.stdout.splitlines()
        if re.match(r"\s+\d+\s+20UPGM", line)
    }
    assert sorted(rows) == [1, 3]  # the two slots scanned
    assert rows[1].endswith("pass") and "≥ 150" in rows[1]
    assert rows[3].endswith("fail")  # the module that breaks down early
    assert "is below the 120 V" in result.stdout  # the official cut (the live rule agrees)
    index = tmp_path / "reports" / "index.html"
    assert index.exists() and "20UPGM22110003" in index.read_text()
    report = (tmp_path / "reports" / "20UPGM22110003" / "index.html").read_text()
    for png in re.findall(r'src="([^"]+\.png)"', report):
        assert (tmp_path / "reports" / "20UPGM22110003" / png).read_bytes()[:4] == b"\x89PNG"
    assert f"teststand tiled serve --data {tmp_path}" in result.stdout
    assert not list((tmp_path / "journal").glob("*"))  # every run verified in Tiled
