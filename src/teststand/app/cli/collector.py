"""Command `teststand collector serve|new|list|stop`: record PVs, serve their history as PVs."""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

from teststand.errors import TeststandError


def register(subcommands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `collector` command group to the top-level parser."""
    group = subcommands.add_parser(
        "collector",
        help="record PVs on demand and serve their history as PVs",
        description="A collector records PVs (by monitor, or every --period s) into ring "
        "buffers and serves, under its prefix, STATE, START, NSAMPLES, per PV n the waveforms "
        "n:T and n:V, and the commands CMD:START/STOP/CLEAR/EXPORT/EXPORT_TILED.",
    ).add_subparsers(title="collector commands", metavar="COMMAND")
    for action, text in (
        ("serve", "record and serve in this process (until Ctrl-C or SIGTERM)"),
        ("new", "start a collector in a process of its own"),
    ):
        parser = group.add_parser(action, help=text)
        parser.add_argument("name", help="collector name")
        parser.add_argument("--prefix", help="PV prefix of the collector, e.g. COL1:")
        parser.add_argument("--pv", action="append", default=[], help="a PV to record (repeat)")
        parser.add_argument("--config", type=Path, help="YAML file with a `collectors:` section")
        parser.add_argument(
            "--stand", type=Path, help="stand file whose `collectors:` section names it (and host)"
        )
        parser.add_argument("--period", type=float, help="sample every PERIOD s (default: monitor)")
        parser.add_argument("--length", type=int, help="samples of history per PV (2000)")
        parser.add_argument("--publish", type=float, help="s between history updates (0.5)")
        parser.add_argument("--tiled", help="Tiled server for CMD:EXPORT_TILED")
        parser.add_argument("--api-key-env", help="variable holding the Tiled API key")
        parser.add_argument("--idle", action="store_true", help="wait for CMD:START to record")
        parser.add_argument(
            "--interfaces", nargs="+", default=["0.0.0.0"], metavar="ADDR", help="serve on"
        )
        parser.set_defaults(handler=_serve if action == "serve" else _new)
    served = group.add_parser(
        "factory",
        help="serve the factory as PVs: PREFIX:NEW (a JSON object), STOP, LIST, MSG",
        description="Create collectors and processing devices by a put to PREFIX:NEW (a JSON "
        'object: {"name": "box", "prefix": "COL1:", "pvs": ["TS1:COLDBOX:TEMPERATURE"]}, or '
        'with "kind", "inputs" and "options" for a processing device), stop one by a put of '
        "its name to PREFIX:STOP, list them in PREFIX:LIST (JSON). Each runs in its own "
        "process, in the registry that `collector list|stop` show.",
    )
    served.add_argument("--prefix", required=True, help="PV prefix of the factory, e.g. FAC:")
    served.add_argument(
        "--interfaces", nargs="+", default=["0.0.0.0"], metavar="ADDR", help="serve on (all)"
    )
    served.add_argument(
        "--ports", nargs="+", type=int, default=[], metavar="PORT",
        help="CA server ports for the processes it starts (one each; default: this one's)",
    )  # fmt: skip
    served.set_defaults(handler=_factory)
    listing = group.add_parser("list", help="the collectors and processing devices started")
    listing.set_defaults(handler=_list)
    stop = group.add_parser("stop", help="stop a collector started with `new`")
    stop.add_argument("name")
    stop.set_defaults(handler=_stop)


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "prefix": args.prefix,
        "pvs": args.pv or None,
        "mode": "period" if args.period is not None else None,
        "period": args.period,
        "length": args.length,
        "publish": args.publish,
        "tiled": args.tiled,
        "api_key_env": args.api_key_env,
    }


def _serve(args: argparse.Namespace) -> int:
    from teststand.app.collector.serve import serve_until_stopped
    from teststand.collect.config import check_host, load_section, make_config, stand_collector
    from teststand.collect.server import CollectorServer

    settings = _settings(args)
    if args.stand is not None:
        config, host = stand_collector(args.stand, args.name, **settings)
        check_host(args.name, host, args.stand)
    elif args.config is not None:
        config = load_section(args.config, args.name, **settings)
    else:
        config = make_config(name=args.name, **{k: v for k, v in settings.items() if v is not None})
    server = CollectorServer(config, autostart=not args.idle)
    return asyncio.run(serve_until_stopped(server, config.prefix, args.interfaces))


def _new(args: argparse.Namespace) -> int:
    from teststand.app.collector import factory
    from teststand.collect.config import check_host, load_section, stand_collector

    prefix = args.prefix
    if args.stand is not None:
        config, host = stand_collector(args.stand, args.name)
        check_host(args.name, host, args.stand)
        prefix = prefix or config.prefix
    elif prefix is None and args.config is not None:
        prefix = load_section(args.config, args.name).prefix
    if not prefix:
        raise TeststandError("collector new: give the PV prefix with --prefix (e.g. COL1:)")
    arguments = [args.name, "--prefix", prefix]
    for pv in args.pv:
        arguments += ["--pv", pv]
    for option in ("config", "stand", "period", "length", "publish", "tiled", "api_key_env"):
        value = getattr(args, option)
        if value is not None:
            arguments += [f"--{option.replace('_', '-')}", str(value)]
    if args.idle:
        arguments.append("--idle")
    arguments += ["--interfaces", *args.interfaces]
    entry = factory.start("collector", args.name, prefix, arguments)
    print(f"collector {entry.name} serves {entry.prefix} (pid {entry.pid}, log {entry.log})")
    return 0


def _factory(args: argparse.Namespace) -> int:
    from teststand.app.collector.factory_ioc import FactoryServer
    from teststand.app.collector.serve import serve_until_stopped

    server = FactoryServer(args.prefix, args.interfaces, args.ports)
    return asyncio.run(serve_until_stopped(server, args.prefix, args.interfaces))


def _list(args: argparse.Namespace) -> int:
    from teststand.app.collector import factory

    for entry in factory.entries():
        state = "running" if entry.running else "ended"
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.started))
        print(f"{entry.name}\t{entry.kind}\t{entry.prefix}\tpid {entry.pid}\t{state}\t{started}")
    return 0


def _stop(args: argparse.Namespace) -> int:
    from teststand.app.collector import factory

    entry = factory.stop(args.name)
    print(f"stopped {entry.kind} {entry.name} ({entry.prefix})")
    return 0
