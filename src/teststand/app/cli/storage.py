"""Command groups `teststand storage` (replay, status) and `teststand tiled` (serve, index)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import yaml

from teststand.errors import TeststandError
from teststand.storage.config import StorageConfig


def register(subcommands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `storage` and `tiled` command groups to the top-level parser."""
    storage = subcommands.add_parser("storage", help="run journals and their replay into Tiled")
    verbs = storage.add_subparsers(title="storage commands", metavar="COMMAND")
    replay = verbs.add_parser(
        "replay",
        help="store journaled runs in Tiled (idempotent); deletes each once verified",
    )
    replay.add_argument("dir", nargs="?", type=Path, help="journal directory")
    _where(replay)
    replay.set_defaults(handler=_replay)
    status = verbs.add_parser("status", help="list the journals of runs not yet in Tiled")
    status.add_argument("dir", nargs="?", type=Path, help="journal directory")
    _where(status)
    status.add_argument("--json", action="store_true", help="one JSON object per journal")
    status.set_defaults(handler=_status)

    tiled = subcommands.add_parser("tiled", help="Tiled server").add_subparsers(
        title="tiled commands", metavar="COMMAND"
    )
    serve = tiled.add_parser(
        "serve",
        help="run a shared Tiled server from the shipped config (SQLite, or PostgreSQL)",
        description="Serve Tiled. The first stdout line is its base URL. Bound to a non-loopback "
        "address it needs --api-key (or TILED_SINGLE_USER_API_KEY, or authentication in --config).",
    )
    serve.add_argument("--config", type=Path, help="Tiled config file (default: the shipped one)")
    serve.add_argument("--data", type=Path, default=Path("tiled-data"), help="data directory")
    serve.add_argument("--catalog", help="postgresql://user:password@host:port/db (default SQLite)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (0 picks a free one)")
    serve.add_argument("--api-key", help="single-user API key (or TILED_SINGLE_USER_API_KEY)")
    serve.add_argument(
        "--read", action="append", type=Path, default=[], help="detector data dir, repeatable"
    )
    serve.add_argument("--log-file", type=Path, help="log here instead of stderr")
    serve.add_argument("--embedded", action="store_true", help=argparse.SUPPRESS)
    serve.set_defaults(handler=_serve)
    index = tiled.add_parser(
        "index",
        help="add the indexes of the run searches to a Tiled catalog (idempotent)",
        description="Create the indexes that keep run searches fast (module, test, stage, stand, "
        "verdict, start time) in an existing Tiled catalog; `tiled serve` reads it unchanged. "
        "`teststand tiled serve` does this itself at each start.",
    )
    index.add_argument("uri", help="postgresql://user:password@host:port/db or the SQLite file")
    index.add_argument("--drop", action="store_true", help="remove them instead")
    index.set_defaults(handler=_index)


def _where(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stand", type=Path, help="stand file whose storage: section to use")
    parser.add_argument("--data", type=Path, help="stand data directory (default from --stand)")
    parser.add_argument("--tiled", help="Tiled URI (default: the stand's, or its embedded one)")
    parser.add_argument("--api-key", help="Tiled API key (or TILED_API_KEY)")


def storage_config(args: argparse.Namespace) -> StorageConfig:
    """The storage section of `--stand` (if given), overridden by the command-line options."""
    from pydantic import ValidationError

    data: dict[str, Any] = {}
    if args.stand is not None:
        try:
            stand = yaml.safe_load(args.stand.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise TeststandError(f"cannot read stand file {args.stand}: {exc}") from None
        data = dict(stand.get("storage") or {}) if isinstance(stand, dict) else {}
    if args.data is not None:
        data["data_dir"] = args.data
    if args.tiled:
        data["tiled"] = args.tiled
    key = args.api_key or os.environ.get("TILED_API_KEY")
    if key:
        data.pop("api_key_env", None)
        data["api_key"] = key
    try:
        return StorageConfig.model_validate(data)
    except ValidationError as exc:
        raise TeststandError(f"storage settings are invalid: {exc}") from None


def _replay(args: argparse.Namespace) -> int:
    from teststand.storage.replay import replay_directory
    from teststand.storage.session import storage_client

    config = storage_config(args)
    directory = args.dir or config.journal_path
    with storage_client(config) as client:
        results = replay_directory(client, directory)
    for result in results:
        print(result.describe())
    failed = [r for r in results if r.outcome == "failed"]
    done = len(results) - len(failed)
    print(f"{len(results)} journal(s): {done} done or live, {len(failed)} failed")
    return 1 if failed else 0


def _status(args: argparse.Namespace) -> int:
    from teststand.storage.status import journal_status

    config = storage_config(args)
    directory = args.dir or config.journal_path
    found = journal_status(directory)
    for item in found:
        if args.json:
            print(json.dumps({**item.__dict__, "path": str(item.path)}))
        else:
            print(item.line())
    if not args.json:
        print(f"{len(found)} journal(s) not yet in Tiled in {directory}")
    return 0


def _index(args: argparse.Namespace) -> int:
    from teststand.storage.indexes import drop_indexes, ensure_indexes

    if args.drop:
        for name in drop_indexes(args.uri):
            print(f"dropped {name}")
        return 0
    for line in ensure_indexes(args.uri).lines():
        print(line)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from teststand.storage.server import ServerSettings, serve

    settings = ServerSettings(
        data_dir=args.data,
        catalog=args.catalog,
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        readable=args.read,
        config=args.config,
        log_file=args.log_file,
        any_port_if_busy=args.embedded,
    )
    serve(settings, exit_on_stdin_eof=args.embedded)
    return 0
