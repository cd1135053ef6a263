"""Command `teststand logs`: where the session logs are (shell, queue worker, demo)."""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path

from teststand.app.cli.storage import storage_config
from teststand.app.locate import find_stand
from teststand.app.sessionlog import log_dir


def register(subcommands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `logs` command to the top-level parser."""
    logs = subcommands.add_parser(
        "logs",
        help="where the session logs are: every plan, command and error of each session",
        description="List the rotating session logs under the stand's data directory "
        "(<data_dir>/logs): shell.log, worker.log (the queue server's worker), demo.log.",
    )
    logs.add_argument("--stand", type=Path, help="stand file (default: as `teststand shell`)")
    logs.add_argument("--data", type=Path, help="data directory (default: the stand file's)")
    logs.add_argument("--tail", type=int, default=0, metavar="N", help="print the last N lines")
    logs.set_defaults(handler=_logs)


def _logs(args: argparse.Namespace) -> int:
    where = argparse.Namespace(
        stand=None if args.data else find_stand(args.stand),
        data=args.data,
        tiled=None,
        api_key=None,
    )
    directory = log_dir(storage_config(where).data_path)
    files = sorted(directory.glob("*.log*")) if directory.is_dir() else []
    print(f"session logs: {directory}")
    if not files:
        print("  none yet: a shell, the queue server's worker or the demo writes them")
    for path in files:
        when = datetime.fromtimestamp(path.stat().st_mtime).strftime("%Y-%m-%d %H:%M:%S")
        print(f"  {path.name:<16} {path.stat().st_size:>10} bytes  last written {when}")
    if args.tail and files:
        newest = max((p for p in files if p.suffix == ".log"), key=lambda p: p.stat().st_mtime)
        lines = newest.read_text(errors="replace").splitlines()[-args.tail :]
        print(f"last {len(lines)} line(s) of {newest.name}:")
        print("\n".join(lines))
    return 0
