"""The `teststand` command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from teststand import __version__
from teststand.app.cli.pairs import parse_pairs
from teststand.app.locate import find_stand
from teststand.errors import TeststandError


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return handler(args)
    except TeststandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="teststand", description="Run detector-module test stands."
    )
    parser.add_argument("--version", action="version", version=f"teststand {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every exchange (DEBUG)")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    demo = commands.add_parser(
        "demo", help="qualify the simulated stand's modules, store the runs, write reports"
    )
    demo.add_argument("--stand", help="stand file (default: the simulated stand, see README)")
    demo.add_argument("--quick", action="store_true", help="one IV of 2 slots (under 30 s)")
    demo.add_argument("--data", type=Path, help="data directory (default: the stand file's)")
    demo.add_argument(
        "--transport", action="store_true", help="drive each instrument with raw commands instead"
    )
    demo.add_argument(
        "--direct", action="store_true", help="drive the devices in-process, not over an IOC"
    )
    demo.add_argument("--prefix", default="TS1:", help="PV prefix of the demo's IOC (TS1:)")
    demo.set_defaults(handler=_demo)

    stand_commands = commands.add_parser(
        "stand", help="the stand described by a stand file"
    ).add_subparsers(title="stand commands", metavar="COMMAND")
    check = stand_commands.add_parser(
        "check",
        help="connect every instrument and print a table of every reading",
        description="Connect every instrument of the stand file (starting the simulators when it "
        "says sim: true), write the hardware limits, and print every device's readings.",
    )
    check.add_argument("file", nargs="?", help="stand file (default: as `--stand` finds it)")
    check.set_defaults(handler=_stand_check)

    query = commands.add_parser(
        "query", help="send raw commands to one instrument and print the replies"
    )
    query.add_argument(
        "url", help="serial:///dev/ttyUSB0?baudrate=9600, tcp://host:port, sim://KIND"
    )
    query.add_argument("commands", nargs="+", metavar="COMMAND")
    query.add_argument("--no-reply", action="store_true", help="send only, read no reply")
    query.set_defaults(handler=_query)

    sim = commands.add_parser("sim", help="instrument simulators").add_subparsers(
        title="simulator commands", metavar="COMMAND"
    )
    kinds = sim.add_parser("kinds", help="list the simulator kinds and their options")
    kinds.set_defaults(handler=_sim_kinds)

    serve = sim.add_parser(
        "serve",
        help="serve one simulator",
        description="Serve one simulator; the first stdout line is its address. Runs until "
        "SIGINT/SIGTERM. Lines on stdin control it: 'faults SPEC', 'reset', 'unplug', "
        "'status', 'call METHOD [JSON_ARG...]'.",
    )
    serve.add_argument("kind", help="simulator kind (see `teststand sim kinds`)")
    where = serve.add_mutually_exclusive_group()
    where.add_argument("--tcp", metavar="HOST:PORT", help="serve on TCP (port 0 picks a free one)")
    where.add_argument("--pty", action="store_true", help="serve on a pty (the default)")
    serve.add_argument("--speed", type=float, default=1.0, help="simulated time speed-up")
    serve.add_argument("--baud", type=int, help="pace replies as on a serial line at this rate")
    serve.add_argument("--latency", type=float, default=0.0, help="USB-adapter latency, s")
    serve.add_argument("--faults", help="fault spec, e.g. garble=0.1,drop=0.05,delay=0.2")
    serve.add_argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="instrument option (JSON value), repeatable",
    )
    serve.set_defaults(handler=_sim_serve)

    stand = sim.add_parser(
        "serve-stand",
        help="serve every simulator of a stand file",
        description="Serve every instrument of a stand file as a simulator; prints one "
        "'NAME URL' line per instrument. Stdin lines 'NAME faults SPEC' etc. control them.",
    )
    stand.add_argument("file", help="stand file (YAML)")
    stand.add_argument("--tcp", action="store_true", help="serve on TCP ports instead of ptys")
    stand.set_defaults(handler=_sim_serve_stand)

    from teststand.app.cli.storage import register as register_storage

    register_storage(commands)
    from teststand.app.cli.export import register as register_export
    from teststand.app.cli.report import register as register_report

    register_report(commands)
    register_export(commands)
    from teststand.app.cli.qserver import register as register_qserver

    register_qserver(commands)
    from teststand.app.cli.queue import register as register_queue

    register_queue(commands)
    from teststand.app.cli.ioc import register as register_ioc

    register_ioc(commands)
    from teststand.app.cli.replay import register as register_replay

    register_replay(commands)
    from teststand.app.cli.monitor import register as register_monitor

    register_monitor(commands)
    from teststand.app.cli.analysis import register as register_analysis

    register_analysis(commands)
    from teststand.app.cli.logs import register as register_logs

    register_logs(commands)
    from teststand.app.cli.web import register as register_web

    register_web(commands)
    from teststand.app.cli.collector import register as register_collector
    from teststand.app.cli.processing import register as register_processing

    register_collector(commands)
    register_processing(commands)
    return parser


def _demo(args: argparse.Namespace) -> int:
    if args.transport:
        from teststand.app.tour import run_tour

        return run_tour(str(find_stand(args.stand)))
    from teststand.app.demo import run_demo

    prefix = None if args.direct else args.prefix
    return run_demo(
        str(find_stand(args.stand)), quick=args.quick, data_dir=args.data, prefix=prefix
    )


def _stand_check(args: argparse.Namespace) -> int:
    from teststand.app.readings import group_lines, read_groups, summary
    from teststand.stand import open_stand

    async def run() -> bool:
        stand = await open_stand(find_stand(args.file))
        try:
            groups = await read_groups([*stand.instruments.values(), *stand.slots.values()])
        finally:
            await stand.close()
        print("\n".join([*group_lines(groups), summary(groups)]))
        return all(group.answered for group in groups)

    return 0 if asyncio.run(run()) else 1


def _query(args: argparse.Namespace) -> int:
    from teststand.app.cli.refusals import refusal
    from teststand.transport import connect

    async def run() -> int:
        refused = 0
        async with connect(args.url, name="query") as link:
            for command in args.commands:
                if args.no_reply:
                    await link.write(command)
                    continue
                reply = await link.query(command)
                print(reply, flush=True)
                if (why := refusal(reply)) is not None:
                    refused += 1
                    print(f"error: {args.url} refused {command!r}: {why}", file=sys.stderr)
        return refused

    return 1 if asyncio.run(run()) else 0


def _sim_kinds(args: argparse.Namespace) -> int:
    from teststand.sim import kinds

    for kind, cls in kinds().items():
        print(kind)
        for option, meaning in cls.options_help.items():
            print(f"    {option}: {meaning}")
    return 0


def _sim_options(kind: str, items: list[str]) -> dict[str, Any]:
    """`-o KEY=VALUE` converted to the types the simulator's constructor declares."""
    from teststand.app.cli.pairs import declared_types
    from teststand.sim import kinds

    simulator = kinds().get(kind)
    types = declared_types(simulator.__init__) if simulator is not None else None
    return parse_pairs(items, "-o", "dialect=2410", types)


def _sim_serve(args: argparse.Namespace) -> int:
    from teststand.sim import FaultSpecError, UnknownSimulator, start_simulator

    transport: Literal["pty", "tcp"] = "pty"
    host, port = "127.0.0.1", 0
    if args.tcp:
        host, _, port_text = args.tcp.rpartition(":")
        if not host or not port_text.isdigit():
            raise TeststandError(f"--tcp wants HOST:PORT, got {args.tcp!r}")
        transport, port = "tcp", int(port_text)
    try:
        running = start_simulator(
            args.kind,
            transport=transport,
            host=host,
            port=port,
            speed=args.speed,
            baud=args.baud,
            latency=args.latency,
            faults=args.faults,
            **_sim_options(args.kind, args.option),
        )
    except (UnknownSimulator, FaultSpecError, ValueError) as exc:
        raise TeststandError(str(exc)) from None
    except OSError as exc:
        raise TeststandError(f"cannot serve {args.kind}: {exc}") from None
    print(running.address, flush=True)
    _serve_until_stopped({"": running}, lambda: running.stop())
    return 0


def _sim_serve_stand(args: argparse.Namespace) -> int:
    from teststand.config import load_stand
    from teststand.stand.simulation import start_simulated_stand

    stand, urls = start_simulated_stand(
        load_stand(args.file), transport="tcp" if args.tcp else "pty"
    )
    for name, url in urls.items():
        print(f"{name} {url}", flush=True)
    _serve_until_stopped(stand.sims, stand.stop)
    return 0


def _serve_until_stopped(sims: dict[str, Any], stop: Callable[[], None]) -> None:
    """Block until SIGINT/SIGTERM, obeying control lines on stdin meanwhile."""
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    threading.Thread(target=_console, args=(sims,), daemon=True).start()
    try:
        while not done.wait(0.2):
            pass
    finally:
        stop()


def _console(sims: dict[str, Any]) -> None:
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        target = sims.get("") if "" in sims else sims.get(words[0])
        if "" not in sims:
            words = words[1:]
        if target is None or not words:
            print(
                f"? usage: {'' if '' in sims else 'NAME '}faults SPEC|reset|unplug|status|call "
                f"METHOD [ARG...]; names: {', '.join(sims)}",
                flush=True,
            )
            continue
        try:
            print(_control(target, words), flush=True)
        except Exception as exc:  # a console typo must not stop the simulators
            print(f"? {exc}", flush=True)


def _control(sim: Any, words: list[str]) -> str:
    verb, rest = words[0], words[1:]
    if verb == "faults":
        sim.set_faults(",".join(rest))
        return f"faults: {sim.server.faults.describe()}"
    if verb == "reset":
        sim.reset()
        return "reset"
    if verb == "unplug":
        sim.unplug()
        return "unplugged"
    if verb == "status":
        return json.dumps(sim.host.call(sim.instrument.snapshot), default=str)
    if verb == "call" and rest and not rest[0].startswith("_"):
        method = getattr(sim.instrument, rest[0])
        values = [json.loads(word) for word in rest[1:]]
        return repr(sim.host.call(lambda: method(*values)))
    raise ValueError(f"unknown control {verb!r}")


if __name__ == "__main__":
    raise SystemExit(main())
