"""Command `teststand processing serve|new|kinds`: PVs in, a function, PVs out."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
from pathlib import Path

from teststand.errors import TeststandError


def register(subcommands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `processing` command group to the top-level parser."""
    group = subcommands.add_parser(
        "processing",
        help="serve computed PVs (dew point, leakage at 20 degC, plate margins, your own)",
        description="A processing device reads its input PVs, calls its function on any "
        "change (or every --period s) and serves the outputs under its prefix, with MSG and "
        "COUNT. KIND is a shipped one (`teststand processing kinds`) or FILE.py:NAME, a "
        "function decorated with teststand.collect.processing.processing in your file.",
    ).add_subparsers(title="processing commands", metavar="COMMAND")
    kinds = group.add_parser("kinds", help="the shipped processing devices")
    kinds.set_defaults(handler=_kinds)
    for action, text in (
        ("serve", "compute and serve in this process (until Ctrl-C or SIGTERM)"),
        ("new", "start a processing device in a process of its own (see `collector list`)"),
    ):
        parser = group.add_parser(action, help=text)
        if action == "new":
            parser.add_argument("name", help="name in the factory's list")
        parser.add_argument("kind", help="shipped kind or FILE.py:NAME")
        parser.add_argument("--prefix", required=True, help="PV prefix of the outputs")
        parser.add_argument(
            "--input", action="append", default=[], metavar="NAME=PV", help="bind an input"
        )
        parser.add_argument(
            "--option", action="append", default=[], metavar="NAME=NUMBER", help="an option"
        )
        parser.add_argument(
            "--interfaces", nargs="+", default=["0.0.0.0"], metavar="ADDR", help="serve on"
        )
        parser.set_defaults(handler=_serve if action == "serve" else _new)


def _pairs(items: list[str], what: str) -> dict[str, str]:
    found = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise TeststandError(f"--{what} {item!r}: give NAME=VALUE")
        found[name] = value
    return found


def _options(args: argparse.Namespace) -> dict[str, float]:
    try:
        return {k: float(v) for k, v in _pairs(args.option, "option").items()}
    except ValueError as exc:
        raise TeststandError(f"--option: {exc}; options are numbers") from None


def _load(kind: str) -> object:
    from teststand.collect.processors import SHIPPED

    if kind in SHIPPED:
        return SHIPPED[kind]
    path, sep, name = kind.rpartition(":")
    if not sep or not path.endswith(".py"):
        raise TeststandError(
            f"no processing kind {kind!r}: shipped ones are {', '.join(SHIPPED)}; or give "
            "FILE.py:NAME"
        )
    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    if spec is None or spec.loader is None or not Path(path).is_file():
        raise TeststandError(f"cannot load {path}: no such Python file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, name):
        raise TeststandError(f"{path} has no {name}")
    return getattr(module, name)


def _serve(args: argparse.Namespace) -> int:
    from teststand.app.collector.serve import serve_until_stopped
    from teststand.collect.processing import Processing, ProcessingServer

    spec = _load(args.kind)
    if not isinstance(spec, Processing):
        raise TeststandError(
            f"{args.kind} is not a processing device: decorate the function with "
            "@processing(inputs=..., outputs=...) from teststand.collect.processing"
        )
    server = ProcessingServer(spec, args.prefix, _pairs(args.input, "input"), _options(args))
    return asyncio.run(serve_until_stopped(server, args.prefix, args.interfaces))


def _new(args: argparse.Namespace) -> int:
    from teststand.app.collector import factory

    inputs = _pairs(args.input, "input")
    arguments = factory.processing_arguments(
        args.kind, args.prefix, inputs, _options(args), args.interfaces
    )
    entry = factory.start("processing", args.name, args.prefix, arguments)
    print(f"processing {entry.name} serves {entry.prefix} (pid {entry.pid}, log {entry.log})")
    return 0


def _kinds(args: argparse.Namespace) -> int:
    from teststand.collect.processors import SHIPPED

    for spec in SHIPPED.values():
        inputs = ", ".join(spec.inputs) + (", ..." if spec.more_inputs else "")
        options = f" options: {', '.join(spec.options)}" if spec.options else ""
        print(f"{spec.name}\tinputs: {inputs}{options}\t{spec.description}")
    return 0
