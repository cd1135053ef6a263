"""Command `teststand web [--stand FILE] [--bind 127.0.0.1:8080] [--users FILE]`."""

from __future__ import annotations

import argparse
import getpass
import os
from pathlib import Path

from teststand.app.locate import find_stand, shipped_profile

#: The queue server's HTTP configuration as shipped (`teststand qserver start --http` uses it).
PROFILE_HTTP_CONFIG = shipped_profile() / "httpserver.yml"


def register(subcommands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `web` command to the top-level parser."""
    web = subcommands.add_parser(
        "web",
        help="the operator page: the stand live, the queue, control, E-stop",
        description="Serve the stand's web page: the state machine, the slots, LV, cooling, "
        "the queue server and the live IV curve, pushed over a WebSocket. It watches the IOC "
        "(the stand file's server: prefix, or --prefix) and the queue server (--state-dir). "
        "Off loopback it needs accounts: --users (a users file of operators and observers) "
        "or --http-accounts (the queue server's HTTP accounts).",
    )
    web.add_argument("--stand", type=Path, help="stand file (default: as `teststand shell`)")
    web.add_argument("--bind", default="127.0.0.1:8080", help="HOST:PORT (default 127.0.0.1:8080)")
    accounts = web.add_mutually_exclusive_group()
    accounts.add_argument("--users", type=Path, help="users file (YAML, hashed passwords)")
    accounts.add_argument(
        "--http-accounts", nargs="?", type=Path, const=PROFILE_HTTP_CONFIG, metavar="CONFIG",
        help="log in with the queue server's HTTP accounts (its bluesky-httpserver config; "
        "default the profile's httpserver.yml)",
    )  # fmt: skip
    web.add_argument("--prefix", help="IOC prefix (default: server.prefix of the stand file)")
    web.add_argument("--state-dir", type=Path, help="queue server state (default: qserver's)")
    web.add_argument("--reports", type=Path, help="HTML reports (default DATA_DIR/reports)")
    web.add_argument("--session-hours", type=float, default=12.0, help="session lifetime (h)")
    web.add_argument("--add-user", metavar="NAME", help="add NAME to --users and exit")
    web.add_argument("--role", choices=("operator", "observer"), help="role of --add-user")
    web.set_defaults(handler=_web)


def _add_user(args: argparse.Namespace) -> int:
    from teststand.app.web import Users, UsersFileError
    from teststand.app.web.accounts import PASSWORD_ENV

    if args.users is None or args.role is None:
        raise UsersFileError("--add-user needs --users FILE and --role operator|observer")
    users = Users.load(args.users) if args.users.exists() else Users({}, args.users)
    password = os.environ.get(PASSWORD_ENV) or getpass.getpass(f"password for {args.add_user}: ")
    users.add(args.add_user, args.role, password)
    print(f"{args.add_user} ({args.role}) written to {args.users}")
    return 0


def _web(args: argparse.Namespace) -> int:
    if args.add_user:
        return _add_user(args)
    import uvicorn

    from teststand.app.qserver import QserverOptions, default_state_dir
    from teststand.app.web import WebError, WebOptions, WebState, check_bind, create_app, parse_bind
    from teststand.config import load_stand

    host, port = parse_bind(args.bind)
    check_bind(host, args.users, args.http_accounts)  # before anything else is read or started
    stand = find_stand(args.stand)
    config = load_stand(stand)
    prefix = args.prefix or (config.server.prefix if config.server else None)
    if not prefix:
        raise WebError(
            f"{stand} has no server: section and no --prefix was given: the page watches the "
            'IOC (`teststand ioc`); add server: {prefix: "TS1:"} or give --prefix'
        )
    options = WebOptions(
        config=config,
        prefix=prefix,
        state_dir=default_state_dir(QserverOptions(stand=stand, state_dir=args.state_dir)),
        host=host,
        port=port,
        users=args.users,
        http_accounts=args.http_accounts,
        reports=args.reports,
        session_hours=args.session_hours,
    )
    state = WebState(options)
    print(f"serving the page of {config.name} ({prefix}) on http://{host}:{port}/", flush=True)
    uvicorn.run(create_app(state), host=host, port=port, log_level="warning", ws="websockets")
    return 0
