"""Command `teststand analysis serve`: live pixel-detector analysis in its own process.

The RunEngine publishes its documents with bluesky's `Publisher` to a `bluesky-0MQ-proxy`; this
process subscribes through the proxy with `RemoteDispatcher`, so it may crash, be killed or be
restarted without slowing or stopping acquisition (a PUB socket never waits for subscribers).
Each run's result is written as `<uid>.json` under `--out` and, with `--journal`, as the run's
pending annotation (`pixel_analysis`), which the storage writer merges into the run in Tiled.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path
from typing import Any

from teststand.errors import TeststandError


def register(subcommands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `analysis` command group to the top-level parser."""
    analysis = subcommands.add_parser("analysis", help="live analysis processes")
    commands = analysis.add_subparsers(dest="analysis_command", required=True)
    serve = commands.add_parser(
        "serve",
        help="pixel-detector live analysis (hit maps, ToT spectra, clusters) from a 0MQ proxy",
        description=__doc__,
    )
    serve.add_argument(
        "--proxy", required=True, metavar="HOST:PORT", help="the outbound address of the proxy"
    )
    serve.add_argument("--out", type=Path, help="directory for one JSON result per run")
    serve.add_argument("--journal", type=Path, help="the storage journal directory (annotations)")
    serve.add_argument("--window", type=int, default=100, help="cluster time window, ns")
    serve.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    from bluesky.callbacks.zmq import RemoteDispatcher

    from teststand.callbacks.pixel_analysis import PixelLiveAnalysis
    from teststand.storage.annotations import save_annotation

    host, _, port = args.proxy.rpartition(":")
    if not host or not port.isdigit():
        raise TeststandError(f"--proxy wants HOST:PORT, got {args.proxy!r}")
    if args.out is None and args.journal is None:
        raise TeststandError("give --out DIR or --journal DIR: where the results go")

    def publish(uid: str, result: dict[str, Any]) -> None:
        if args.out is not None:
            args.out.mkdir(parents=True, exist_ok=True)
            partial = args.out / f".{uid}.json.partial"  # renamed whole: no reader sees half
            partial.write_text(json.dumps(result))
            partial.replace(args.out / f"{uid}.json")
        if args.journal is not None:
            save_annotation(args.journal, uid, {"pixel_analysis": result})
        print(f"analysed {uid}: {result['hits']} hits, {result['clusters']} clusters", flush=True)

    dispatcher = RemoteDispatcher((host, int(port)))
    dispatcher.subscribe(PixelLiveAnalysis(publish, window_ns=args.window))  # type: ignore[no-untyped-call]
    print(f"listening to {args.proxy}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        dispatcher.start()  # type: ignore[no-untyped-call]
    return 0
