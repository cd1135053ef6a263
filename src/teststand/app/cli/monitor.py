"""Command `teststand monitor [status|dashboards] STAND.yaml`: the stand's PVs into InfluxDB."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from teststand.errors import TeststandError

if TYPE_CHECKING:
    from teststand.config import StandConfig

ACTIONS = ("status", "dashboards")


def register(subcommands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `monitor` command to the top-level parser."""
    monitor = subcommands.add_parser(
        "monitor",
        help="write every PV of the stand to InfluxDB (and Grafana dashboards for it)",
        description="`monitor STAND.yaml`: subscribe to the stand's PVs over Channel Access and "
        "write them to the InfluxDB of the stand file's monitoring: section, through a journal "
        "on disk while the database is down. `monitor status STAND.yaml`: the journal's backlog "
        "and the monitor's counters. `monitor dashboards STAND.yaml -o DIR`: Grafana "
        "dashboards generated from the stand file.",
    )
    monitor.add_argument("words", nargs="+", metavar="[status|dashboards] STAND.yaml")
    monitor.add_argument(
        "--prefix", help="PV prefix (default: server.prefix of the stand, or TS1:)"
    )
    monitor.add_argument("-o", "--output", type=Path, help="dashboards: the folder to write")
    monitor.set_defaults(handler=_monitor)


def _monitor(args: argparse.Namespace) -> int:
    from teststand.config import load_stand

    action = args.words[0] if len(args.words) == 2 and args.words[0] in ACTIONS else "run"
    if len(args.words) != (1 if action == "run" else 2):
        raise TeststandError("usage: teststand monitor [status|dashboards] STAND.yaml")
    config = load_stand(args.words[-1])
    if action == "status":
        return _status(config)
    if action == "dashboards":
        from teststand.app.monitor.dashboards import write_dashboards

        if args.output is None:
            raise TeststandError("monitor dashboards: give the folder to write with -o DIR")
        for path in write_dashboards(config, args.output):
            print(path)
        return 0
    from teststand.app.ioc import prefix_of
    from teststand.app.monitor.run import run_monitor

    return asyncio.run(_run(run_monitor(config, prefix_of(config, args.prefix))))


async def _run(monitor: Coroutine[Any, Any, None]) -> int:
    task = asyncio.ensure_future(monitor)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return 0


def _status(config: StandConfig) -> int:
    from teststand.app.monitor.journal import Journal
    from teststand.app.monitor.run import STATUS_FILE, require_monitoring
    from teststand.app.pids import process_running

    settings = require_monitoring(config)
    journal = Journal(settings.journal_dir, settings.journal_max_bytes, settings.journal_warn)
    backlog = journal.backlog()
    print(
        f"journal {journal.directory}: {backlog.points} points in {backlog.batches} batches, "
        f"{backlog.bytes} of {settings.journal_max_bytes} bytes"
    )
    path = journal.directory / STATUS_FILE
    if not path.exists():
        print("no monitor has run with this journal yet")
        return 0
    status = json.loads(path.read_text())
    age = time.time() - float(status.pop("updated"))
    pid, started = int(status.pop("pid")), status.pop("started", None)
    if started is not None and process_running(pid, float(started)):
        print(f"monitor running: pid {pid}")
    else:
        print(f"monitor not running: pid {pid} has exited (start it: teststand monitor FILE)")
    print(f"last status {age:.0f} s ago:")
    for key, value in status.items():
        print(f"  {key}: {value}")
    return 0
