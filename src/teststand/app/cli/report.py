"""Command `teststand report`: per-module HTML reports from the runs in Tiled."""

from __future__ import annotations

import argparse
from pathlib import Path

from teststand.app.cli.storage import storage_config
from teststand.app.locate import find_stand


def register(subcommands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `report` command to the top-level parser."""
    report = subcommands.add_parser(
        "report",
        help="per-module reports (IV curves, stages, temperatures, verdict) from Tiled",
        description="Write <out>/<MODULE_ID>/index.html with its PNGs, built from the runs in "
        "Tiled alone; with --all, every module's report and <out>/index.html listing them.",
    )
    report.add_argument("module_id", nargs="?", metavar="MODULE_ID", help="module to report on")
    report.add_argument("--all", action="store_true", help="report on every module in Tiled")
    report.add_argument(
        "--out",
        type=Path,
        help="output directory (default: reports/ under the stand's data_dir, or ./reports "
        "with --tiled)",
    )
    report.add_argument("--tiled", help="Tiled URI (default: the stand's, or its embedded one)")
    report.add_argument("--api-key", help="Tiled API key (or TILED_API_KEY)")
    report.add_argument(
        "--stand",
        type=Path,
        help="stand file whose storage: section to use (default: as `teststand shell` finds it)",
    )
    report.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
    from teststand.app.report import ReportError, module_report, write_all
    from teststand.storage.catalog import Catalog
    from teststand.storage.session import storage_client

    if args.all == (args.module_id is not None):
        raise ReportError("give one MODULE_ID, or --all for every module (not both)")
    where = argparse.Namespace(
        stand=None if args.tiled else find_stand(args.stand),
        data=None,
        tiled=args.tiled,
        api_key=args.api_key,
    )
    config = storage_config(where)
    out: Path = args.out or (Path("reports") if args.tiled else config.data_path / "reports")
    with storage_client(config) as client:
        catalog = Catalog(client)
        if args.all:
            reports, index = write_all(catalog, out)
            for report in reports:
                print(f"{report.module_id}: {report.verdict}")
            print(f"{len(reports)} module report(s) written; index: {index.resolve()}")
        else:
            report, index = module_report(catalog, args.module_id, out)
            print(f"{report.module_id}: {report.verdict}")
            print(f"report written to {index.resolve()}")
    return 0
