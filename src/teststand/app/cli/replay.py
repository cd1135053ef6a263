"""Command `teststand replay UID`: a stored run's documents from Tiled, through callbacks."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from teststand.app.cli.storage import _where, storage_config
from teststand.app.locate import find_stand
from teststand.errors import TeststandError


def register(subcommands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `replay` command to the top-level parser."""
    replay = subcommands.add_parser(
        "replay",
        help="feed a stored run's documents from Tiled through the IV analysis, a table, a plot",
        description="Read run UID's documents from Tiled in order (start, descriptors, events, "
        "stop) and feed them to the callbacks asked for. From Python: "
        "teststand.storage.playback.replay(uid, callbacks, catalog=...).",
    )
    replay.add_argument("uid", help="run uid")
    replay.add_argument("--analysis", action="store_true", help="the live IV analysis's verdict")
    replay.add_argument("--table", action="store_true", help="the live table of the run")
    replay.add_argument(
        "--plot",
        nargs="?",
        const=Path(),
        type=Path,
        metavar="FILE",
        help="the IV plot, saved to FILE (default UID8-iv.png)",
    )
    _where(replay)
    replay.set_defaults(handler=_replay)


def _replay(args: argparse.Namespace) -> int:
    from teststand.callbacks.display import LiveIVPlot, RunTable
    from teststand.callbacks.iv_analysis import IVAnalysis
    from teststand.storage.catalog import Catalog
    from teststand.storage.playback import replay
    from teststand.storage.session import storage_client

    if not args.tiled:
        args.stand = find_stand(args.stand)
    callbacks: list[Any] = []
    table = RunTable(sys.stdout) if args.table else None
    analysis = IVAnalysis() if args.analysis else None
    plot = LiveIVPlot() if args.plot is not None else None
    callbacks = [c for c in (table, analysis, plot) if c is not None]
    if not callbacks:
        raise TeststandError("give at least one of --analysis, --table, --plot")
    with storage_client(storage_config(args)) as client:
        catalog = Catalog(client)
        uid = str(catalog.run(args.uid).metadata["start"]["uid"])
        count = replay(uid, callbacks, catalog=catalog)
    print(f"replayed {count} documents of run {uid}")
    if analysis is not None:
        summary = analysis.summaries.get(uid)
        if not summary:
            print(f"analysis: run {uid} is not an IV run of the metadata schema (nothing analysed)")
        else:
            print(json.dumps(summary, indent=1, default=str))
    if plot is not None:
        target = args.plot if args.plot != Path() else Path(f"{uid[:8]}-iv.png")
        print(f"IV plot: {plot.save(target).resolve()}")
    return 0
