"""The stand soak, short: `benchmarks/soak.py --short`, every fault once, every goal but growth.

Part of `make test`: started first, in a process of its own beside the suite's two xdist
workers (after them it would add its minutes to the suite's); `make soak` runs it alone. Its CA
ports, like the suite's, are reserved (`teststand.app.ioc.process.reserve_ca_port`): when they
were merely free when allocated, the soak's and the suite's servers could share one and the
suite's searches went unanswered.

The whole stand runs as separate processes (simulators at speed 100, the IOC with its watchdog,
InfluxDB and the monitor, the queue server with the profile and the embedded Tiled) and IV scans
and qualifications are queued back to back. Each fault of a lab is injected once: while the
queue runs, Tiled killed, link faults of every class on every instrument (all at once, 8 s) and
InfluxDB killed (10 s); then the queue worker killed during a plan; then, during the one
recovery that follows (environment destroyed, control taken over), the lid opened, a humidity
spike and the HV cable unplugged, each with 50 V raised on four channels first and each reset
before the next.

Why this short (about 5 minutes of wall time on the loaded 2-core machine, `--duration 0
--gap 3`): the suite must stay under 15 minutes. Most of it is the stand's own time: its
processes' start (about 2 minutes), Tiled's restart after its kill (up to a minute) and one
environment reopening; chaining the three trips during the worker's recovery saves three more
(a minute each). Memory, descriptor and thread growth need hours: `growth` is reported but
judged only on long runs (the long run of `benchmarks/soak.py`, README "The stand soak").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.mark.timeout(900)
def test_every_fault_once_loses_nothing_and_is_never_unsafe(tmp_path: Path) -> None:
    command = [sys.executable, str(HERE / "soak.py"), "--short", "--duration", "0"]
    command += ["--gap", "3", "--sample-period", "10", "--seed", "7", "--keep", str(tmp_path)]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("EPICS_")}
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=850, env=environment, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-5000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    (tmp_path / "figures.json").write_text(json.dumps(figures, indent=1))
    goals = figures["goals"]
    faults = {entry["fault"]: entry for entry in figures["faults"]}
    assert len(faults) == 7, faults  # every fault, once
    # Each trip acted on within its time, each service back within its time. Whether the stand
    # rode through the link faults (`rode_through_link_faults`) is reported, not asserted: on
    # this loaded machine the IOC sometimes answers too late and the stand trips (safe side).
    assert goals["every_fault_handled"], faults
    assert figures["runs"] > 0 and goals["no_run_lost_or_duplicated"], figures
    assert goals["journals_empty"], figures
    assert goals["points_checked"] and goals["no_point_lost_or_duplicated"], figures
    # the worker's death, the lid and the humidity trip to SAFE (the cable: ERROR), HV up
    assert figures["safe_spans"] >= 3 and goals["no_unsafe_moment"], figures
    assert figures["hv_samples_while_safe"] > 0, figures
    down = figures["hv_down_after_safe_s"]
    seen = {key: figures[key] for key in ("states", "unprovoked_trips", "hv_down_after_safe_s")}
    assert len(down) >= 2 and all(s is not None and s < 3.0 for s in down), seen
    assert not figures["problems"], figures["problems"]
