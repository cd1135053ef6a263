"""Command `teststand export itk MODULE`: IV runs as ITk measurement files and database payloads."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from teststand.app.cli.storage import storage_config

DEFAULT_STAND = Path("profile_collection/stand.yaml")


def register(subcommands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `export itk` to the top-level parser."""
    formats = subcommands.add_parser(
        "export", help="runs in other communities' formats"
    ).add_subparsers(title="formats", metavar="FORMAT")
    itk = formats.add_parser(
        "itk",
        help="IV runs as ITk IV_MEASURE measurement files and production-database payloads",
        description="Write <out>/<MODULE>/<stage>_<run>.json (module-qc-data-tools' measurement "
        "format, validated against its schema) and <out>/<MODULE>/payloads/<stage>_<run>.json "
        "(the test runs for the production database, with the official analysis's results) for "
        "every completed IV run of MODULE in a stage of the ITk flow. --upload also sends the "
        "payloads with itkdb (access codes in ITKDB_ACCESS_CODE1 and ITKDB_ACCESS_CODE2).",
    )
    itk.add_argument("module_id", metavar="MODULE", help="the module's ITk serial number")
    itk.add_argument("--stage", help="only this stage of the ITk flow (e.g. INITIAL_WARM)")
    itk.add_argument(
        "--out", type=Path, help="output directory (default: itk/ under the stand's data_dir)"
    )
    itk.add_argument("--upload", action="store_true", help="send the payloads with itkdb")
    itk.add_argument("--institution", help="institution code (default: the stand's itk section)")
    itk.add_argument("--tiled", help="Tiled URI (default: the stand's, or its embedded one)")
    itk.add_argument("--api-key", help="Tiled API key (or TILED_API_KEY)")
    itk.add_argument(
        "--stand",
        type=Path,
        default=DEFAULT_STAND,
        help=f"stand file: storage, institution and analysis rules (default {DEFAULT_STAND})",
    )
    itk.set_defaults(handler=_export_itk)


def _write(path: Path, document: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")


def _export_itk(args: argparse.Namespace) -> int:
    from teststand.app import itk_export as itk
    from teststand.config import load_stand
    from teststand.itk import module_layer
    from teststand.storage.catalog import Catalog
    from teststand.storage.session import storage_client

    itk.check_stage(args.stage)  # bad input is refused before anything is read or written
    try:
        module_layer(args.module_id)
    except ValueError as exc:
        raise itk.ExportError(f"MODULE {exc}") from None
    codes = itk.access_codes() if args.upload else None
    stand = load_stand(args.stand)
    institution = args.institution or stand.itk.institution
    if not institution:
        raise itk.ExportError(
            "no institution code: give --institution CODE or set itk.institution in the stand "
            f"file {args.stand}"
        )
    where = argparse.Namespace(stand=args.stand, data=None, tiled=args.tiled, api_key=args.api_key)
    config = storage_config(where)
    out: Path = (args.out or config.data_path / "itk") / args.module_id
    with storage_client(config) as client:
        runs = list(itk.iv_runs(Catalog(client), args.module_id, args.stage))
        if not runs:
            stage = f" at stage {args.stage}" if args.stage else " in a stage of the ITk flow"
            raise itk.ExportError(f"no completed IV run of {args.module_id}{stage} in Tiled")
        documents = [
            (run, itk.measurement(run, institution), itk.payload(run, institution, stand.itk))
            for run in runs  # every run is checked before any file is written
        ]
    for run, measurement, payload in documents:
        itk.validate_measurement(measurement, run.label)
        itk.validate_payload(payload, run.label)
    for run, measurement, payload in documents:
        _write(out / f"{run.name}.json", measurement)
        _write(out / "payloads" / f"{run.name}.json", payload)
        verdict = "pass" if payload["passed"] else "fail"
        print(f"{run.stage:<26} run {run.uid[:8]}  official {verdict}  -> {out / run.name}.json")
    if not stand.itk.official:
        print("note: the stand's itk rules differ from the official ones; the payloads follow them")
    if codes is not None:
        itk.upload([payload for _, _, payload in documents], codes)
        print(f"{len(documents)} test run(s) sent to the ITk production database")
    else:
        print(f"{len(documents)} run(s) written to {out}; nothing sent (add --upload to send)")
    return 0
