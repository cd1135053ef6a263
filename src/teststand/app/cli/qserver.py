"""Command group `teststand qserver` (start, stop, status, apikey)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from teststand.app.qserver import (
    PASSWORD_ENV,
    PASSWORDS_FILE,
    QserverError,
    QserverOptions,
    default_state_dir,
    http_api_key,
    http_password,
    read_state,
    start,
    status,
    stop,
)


def register(subcommands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `qserver` command group to the top-level parser."""
    qserver = subcommands.add_parser(
        "qserver", help="Redis, bluesky-queueserver's RE Manager and the HTTP server"
    )
    verbs = qserver.add_subparsers(title="qserver commands", metavar="COMMAND")

    begin = verbs.add_parser(
        "start",
        help="start Redis and the RE Manager (and the HTTP server) in the background",
        description="Validate the stand file and the profile, start Redis (the embedded one "
        "unless --redis) and the RE Manager with the profile's startup files, and print the "
        "addresses. Pids, ports and logs are kept in the state directory.",
    )
    _where(begin)
    begin.add_argument("--startup-dir", type=Path, help="startup files (default PROFILE/startup)")
    begin.add_argument(
        "--existing-plans",
        type=Path,
        metavar="FILE",
        help="plans and devices (default PROFILE/existing_plans_and_devices.yaml)",
    )
    begin.add_argument(
        "--permissions",
        type=Path,
        metavar="FILE",
        help="user groups (default PROFILE/user_group_permissions.yaml)",
    )
    begin.add_argument("--redis", metavar="URL", help="use this Redis (redis://HOST:PORT[/DB])")
    begin.add_argument("--redis-port", type=int, default=0, help="embedded Redis port (0: free)")
    begin.add_argument("--redis-name-prefix", default="qs_default", help="prefix of Redis keys")
    begin.add_argument("--host", default="127.0.0.1", help="address of the 0MQ sockets")
    begin.add_argument("--control-port", type=int, default=60615, help="0MQ control port")
    begin.add_argument("--info-port", type=int, default=60625, help="0MQ info (console) port")
    begin.add_argument(
        "--ipython-kernel", action="store_true", help="run the worker in an IPython kernel"
    )
    begin.add_argument("--http", action="store_true", help="also start bluesky-httpserver")
    begin.add_argument("--http-port", type=int, default=60610, help="HTTP port (on 127.0.0.1)")
    begin.add_argument("--http-config", type=Path, help="default PROFILE/httpserver.yml")
    begin.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for each")
    begin.set_defaults(handler=_start)

    end = verbs.add_parser(
        "stop",
        help="stop the HTTP server, the RE Manager, then the embedded Redis",
        description="Stop what `qserver start` started. A running or paused plan makes it "
        "refuse, unless --force (which kills the plan).",
    )
    _where(end)
    end.add_argument("--force", action="store_true", help="stop even while a plan runs")
    end.set_defaults(handler=_stop)

    show = verbs.add_parser("status", help="what runs; exit status 3 when nothing runs")
    _where(show)
    show.set_defaults(handler=_status)

    key = verbs.add_parser(
        "apikey", help="log in to the running HTTP server and print a new API key"
    )
    _where(key)
    key.add_argument("--user", default="operator", choices=sorted(PASSWORD_ENV))
    key.add_argument("--days", type=float, default=30.0, help="validity (days)")
    key.set_defaults(handler=_apikey)


def _where(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile", type=Path, help="profile directory (default: the one shipped with teststand)"
    )
    parser.add_argument(
        "--stand",
        type=Path,
        help="stand file (default $TESTSTAND_STAND, PROFILE/stand.yaml, stand: in "
        "~/.config/teststand/config.yaml, else the simulated stand)",
    )
    parser.add_argument(
        "--state-dir", type=Path, help="pids, logs, Redis data (default DATA_DIR/qserver)"
    )


def _base(args: argparse.Namespace) -> QserverOptions:
    return QserverOptions(profile=args.profile, stand=args.stand, state_dir=args.state_dir)


def _start(args: argparse.Namespace) -> int:
    options = replace(
        _base(args),
        startup_dir=args.startup_dir,
        existing_plans=args.existing_plans,
        permissions=args.permissions,
        redis=args.redis,
        redis_port=args.redis_port,
        redis_prefix=args.redis_name_prefix,
        host=args.host,
        control_port=args.control_port,
        info_port=args.info_port,
        ipython_kernel=args.ipython_kernel,
        http=args.http,
        http_port=args.http_port,
        http_config=args.http_config,
        timeout=args.timeout,
    )
    components = start(options)
    state_dir = default_state_dir(options)
    for component in components:
        print(_describe(component.name, component.address, component.pid), flush=True)
    if options.http:
        print(
            f"HTTP accounts: {', '.join(PASSWORD_ENV)}; passwords in "
            f"{state_dir / PASSWORDS_FILE} (or the environment variables "
            f"{', '.join(PASSWORD_ENV.values())})"
        )
    print(f"state and logs: {state_dir}")
    return 0


def _describe(name: str, address: str, pid: int | None) -> str:
    who = f"pid {pid}" if pid is not None else "external"
    if name == "manager":
        control, info = address.split()
        return f"RE Manager: control {control}, info {info} ({who})"
    label = {"redis": "Redis", "http": "HTTP server"}.get(name, name)
    return f"{label}: {address} ({who})"


def _stop(args: argparse.Namespace) -> int:
    state_dir = default_state_dir(_base(args))
    stopped = stop(state_dir, force=args.force)
    if not stopped:
        print(f"the queue server of {state_dir} is not running")
    for component in stopped:
        print(
            f"stopped {component.name}"
            if component.pid is not None
            else f"left {component.name} running (not ours): {component.address}"
        )
    return 0


def _status(args: argparse.Namespace) -> int:
    state_dir = default_state_dir(_base(args))
    found = status(state_dir)
    if not found:
        print(f"the queue server of {state_dir} is not running")
        return 3
    for item in found:
        print(item.line())
    return 0 if all(item.running for item in found) else 3


def _apikey(args: argparse.Namespace) -> int:
    state_dir = default_state_dir(_base(args))
    http = [c for c in read_state(state_dir) if c.name == "http" and c.alive]
    if not http:
        raise QserverError(
            f"no HTTP server runs for {state_dir}: start it with `teststand qserver start --http`"
        )
    password = http_password(state_dir, args.user)
    print(http_api_key(http[0].address, args.user, password, int(args.days * 86400)))
    return 0
