"""Command `teststand ioc STAND.yaml [--prefix TS1:] [--interfaces ADDR…] [--list]`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

log = logging.getLogger("teststand.ioc")


def register(subcommands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `ioc` command to the top-level parser."""
    ioc = subcommands.add_parser(
        "ioc",
        help="serve the stand's instruments as EPICS Channel Access PVs",
        description="Open every instrument of the stand file (its simulators with sim: true), "
        "serve every device signal as a PV under the prefix and poll each instrument. Runs "
        "until Ctrl-C or SIGTERM; then HV goes to 0 V and the instruments are released. The "
        "stand's state machine and interlock watchdog run inside (the stand file's interlocks: "
        "section is required).",
    )
    ioc.add_argument("stand", type=Path, help="stand file")
    ioc.add_argument("--prefix", help="PV prefix (default: server.prefix of the stand, or TS1:)")
    ioc.add_argument(
        "--interfaces",
        nargs="+",
        default=["0.0.0.0"],
        metavar="ADDR",
        help="addresses to serve on (default: all)",
    )
    ioc.add_argument("--poll", type=float, default=0.2, help="poll period in s (default 0.2)")
    ioc.add_argument("--list", action="store_true", help="print the PVs and exit")
    ioc.add_argument(
        "--no-watchdog",
        action="store_true",
        help="serve without the state machine and interlock watchdog: for tests of the IOC "
        "itself, never with modules mounted",
    )
    ioc.set_defaults(handler=_ioc)


LIST_HEADER = """\
# Names follow the device tree: {prefix} + the attribute path, upper case, ':'-joined; vector
# elements are CH<n> and SLOT<n> (HV:CH3:VOLTAGE is stand.hv.channels[3].voltage). A movable
# device's set point PV is its move (a put with completion returns when it has settled);
# ..._WRITE writes the set point alone. Each device has a MSG PV (its last refusal).
# name\ttype\tunits\taccess\tdescription"""


def _ioc(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    from teststand.app.ioc import open_ioc, serve
    from teststand.app.ioc.safety import plug_in

    if args.no_watchdog:
        log.warning("serving WITHOUT the interlock watchdog (--no-watchdog): nothing guards HV")
    hooks = [] if args.no_watchdog else [plug_in]
    ioc = await open_ioc(
        args.stand, args.prefix, poll_period=args.poll, check_prefix=not args.list, hooks=hooks
    )
    if args.list:
        try:
            print(LIST_HEADER.format(prefix=ioc.prefix))
            for pv in sorted(ioc.info, key=lambda info: info.name):
                access = "rw" if pv.writable else "r"
                print(f"{pv.name}\t{pv.type}\t{pv.units}\t{access}\t{pv.description}")
        finally:
            await ioc.stand.close()
        return 0
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    print(
        f"serving {ioc.prefix} ({len(ioc.pvdb)} PVs); watch: caproto-monitor {ioc.prefix}SLOT1:BIAS"
    )
    sys.stdout.flush()
    with contextlib.suppress(asyncio.CancelledError):
        await serve(ioc, args.interfaces)
    return 0
