"""Command groups `teststand queue` (queue plans on the queue server, follow and control them)
and `teststand shell` (IPython with the stand's profile)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from teststand.app.cli.pairs import parse_pairs
from teststand.app.cli.qserver import _base, _where
from teststand.app.locate import STAND_ENV, find_profile, find_stand
from teststand.app.qserver import OPERATOR_GROUP, default_state_dir
from teststand.config import load_stand
from teststand.errors import TeststandError

if TYPE_CHECKING:  # the operator (and Tiled) is imported only when a queue command runs
    from teststand.app.operator import Operator

LOCK_KEY_ENV = "TESTSTAND_LOCK_KEY"


class ParameterError(TeststandError, ValueError):
    """A plan parameter given twice."""


def register(subcommands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `queue` and `shell` commands to the top-level parser."""
    queue = subcommands.add_parser(
        "queue",
        help="queue plans on the queue server, follow, pause, resume and abort them",
        description="Talk to the RE Manager that `teststand qserver start` started (found in "
        "its state directory).",
    )
    verbs = queue.add_subparsers(title="queue commands", metavar="COMMAND")

    add = _verb(verbs, "add", "queue a plan and start the queue", _add)
    add.add_argument("plan", help="plan name, e.g. module_qualification or iv_scan")
    add.add_argument("--slots", help="slots, e.g. 1-8 or 1,3,5")
    add.add_argument("--stage", help="qualification stage, e.g. INITIAL_WARM")
    add.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="plan parameter (a JSON value, else text), repeatable: --param stop=150",
    )
    add.add_argument("--no-start", action="store_true", help="queue it without starting")
    add.add_argument("--watch", action="store_true", help="follow it until it ends")

    _verb(verbs, "status", "the manager, its environment and lock, the queue, the history", _status)
    watch = _verb(
        verbs, "watch", "follow an item (default: the queue, item by item, until idle)", _watch
    )
    watch.add_argument("item", nargs="?", help="item uid (default: the running item)")
    watch.add_argument("--timeout", type=float, help="give up after this many seconds")
    results = _verb(verbs, "results", "the runs of an item (or a run) from Tiled", _results)
    results.add_argument("uid", help="item uid or run uid")
    _verb(verbs, "open", "open the worker environment (builds the stand)", _open)
    _verb(verbs, "close", "close the worker environment (releases the instruments)", _close)
    pause = _verb(verbs, "pause", "pause the running plan at its next checkpoint", _pause)
    pause.add_argument("--immediate", action="store_true", help="pause at once")
    _verb(verbs, "resume", "resume the paused plan", _resume)
    _verb(verbs, "abort", "abort the running or paused plan (HV goes to 0 V)", _abort)
    _verb(verbs, "clear", "remove every queued item", _clear)
    _verb(verbs, "start", "start the queue (runs the queued items in order)", _start)
    remove = _verb(verbs, "remove", "take one item off the queue", _remove)
    remove.add_argument("item", help="item uid")
    lock = _verb(verbs, "lock", "lock the environment and the queue with a key", _lock)
    lock.add_argument("key", help="the lock key (keep it: it unlocks)")
    lock.add_argument("--note", help="why, for whoever finds it locked")
    unlock = _verb(verbs, "unlock", "unlock with the key it was locked with", _unlock)
    unlock.add_argument("key", help="the lock key")

    shell = subcommands.add_parser(
        "shell",
        help="IPython with the stand's profile (RE, devices, plans, live display, catalog)",
        description="Start `ipython --profile-dir=PROFILE`. Arguments after `--` go to IPython: "
        'teststand shell -- -c "print(stand)"',
    )
    shell.add_argument(
        "--profile", type=Path, help="profile directory (default: the one shipped with teststand)"
    )
    shell.add_argument("--stand", type=Path, help=f"stand file (sets {STAND_ENV})")
    shell.add_argument("ipython_args", nargs="*", help="arguments for IPython (after --)")
    shell.set_defaults(handler=_shell)


def _verb(verbs: Any, name: str, text: str, handler: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = verbs.add_parser(name, help=text, description=text)
    _where(parser)
    parser.add_argument(
        "--lock-key",
        default=os.environ.get(LOCK_KEY_ENV),
        help=f"the manager's lock key (default ${LOCK_KEY_ENV})",
    )
    parser.add_argument(
        "--user-group",
        default=OPERATOR_GROUP,
        help=f"queueserver user group (permissions; default {OPERATOR_GROUP})",
    )
    parser.set_defaults(handler=handler)
    return parser


def _operator(args: argparse.Namespace) -> Operator:
    from teststand.app.operator import Operator

    options = _base(args)
    return Operator.from_state_dir(
        default_state_dir(options),
        storage=load_stand(options.stand_file).storage,
        user_group=args.user_group,
        lock_key=args.lock_key,
    )


def _add(args: argparse.Namespace) -> int:
    named = {key: getattr(args, key) for key in ("slots", "stage") if getattr(args, key)}
    params = parse_pairs(args.param, "--param", "stop=150")
    if twice := sorted(named.keys() & params.keys()):
        raise ParameterError(f"give {twice[0]} once: --{twice[0]} or --param {twice[0]}=...")
    params = {**named, **params}
    with _operator(args) as operator:
        uid = operator.submit(args.plan, start=not args.no_start, **params)
        state = operator.status(history=0)
        print(f"queued {args.plan} as {uid} (manager {state.manager_state})", flush=True)
        return _follow(operator, uid, None) if args.watch else 0


def _follow(operator: Operator, uid: str, timeout: float | None) -> int:
    last, shown = None, ""
    for last in operator.follow(uid, timeout=timeout):
        if last.describe() != shown:
            shown = last.describe()
            print(shown, flush=True)
    return 0 if last is not None and last.succeeded else 1


def _watch(args: argparse.Namespace) -> int:
    with _operator(args) as operator:
        if args.item:
            return _follow(operator, args.item, args.timeout)
        code, seen = 0, set[str]()
        while True:
            state = operator.status(history=0)
            item = state.running or (
                state.queue[0] if state.queue and state.manager_state != "idle" else None
            )
            if item is None or item.uid in seen:
                if not seen:
                    print(
                        f"nothing runs (manager {state.manager_state}, {len(state.queue)} queued)"
                    )
                return code
            seen.add(item.uid)
            code = max(code, _follow(operator, item.uid, args.timeout))


def _status(args: argparse.Namespace) -> int:
    with _operator(args) as operator:
        for line in operator.status().lines():
            print(line)
    return 0


def _results(args: argparse.Namespace) -> int:
    with _operator(args) as operator:
        runs = operator.results(args.uid)
        if not runs:
            print(f"{args.uid} made no runs")
        for run in runs:
            modules = ", ".join(run.module_ids) or "-"
            print(
                f"{run.uid}  {run.test or '-'} {run.stage or '-'}  exit {run.exit_status or '?'}"
                f"  verdict {run.verdict or '-'}  modules {modules}"
            )
            slots = (run.analysis or {}).get("slots") or {}
            for slot, result in sorted(slots.items(), key=lambda item: int(item[0])):
                reasons = "; ".join(str(r) for r in result.get("reasons") or []) or "-"
                module = result.get("module_id") or "-"
                print(f"  slot {slot} {module}: {result.get('verdict') or '-'}: {reasons}")
    return 0


def _simple(args: argparse.Namespace, action: str, done: str) -> int:
    with _operator(args) as operator:
        getattr(operator, action)()
    print(done)
    return 0


def _open(args: argparse.Namespace) -> int:
    return _simple(args, "open_environment", "environment open")


def _close(args: argparse.Namespace) -> int:
    return _simple(args, "close_environment", "environment closed")


def _pause(args: argparse.Namespace) -> int:
    with _operator(args) as operator:
        operator.pause(immediate=args.immediate)
    print("pause requested" + (" (immediate)" if args.immediate else " (at the next checkpoint)"))
    return 0


def _resume(args: argparse.Namespace) -> int:
    return _simple(args, "resume", "resumed")


def _abort(args: argparse.Namespace) -> int:
    with _operator(args) as operator:
        item = operator.abort()
    if item is None:
        print("abort requested; nothing was aborted (no plan was running or paused)")
    else:
        print(
            f"aborted {item.call()}  {item.uid}: its cleanup brought HV to 0 V; it is in the "
            "history as aborted and was taken off the queue"
        )
    return 0


def _clear(args: argparse.Namespace) -> int:
    with _operator(args) as operator:
        removed = operator.clear()
    print(f"queue cleared: {len(removed)} item(s) removed")
    for item in removed:
        print(f"  removed {item.call()}  {item.uid}")
    return 0


def _start(args: argparse.Namespace) -> int:
    return _simple(args, "start", "queue started")


def _remove(args: argparse.Namespace) -> int:
    with _operator(args) as operator:
        uid = operator.remove(args.item)
    print(f"removed {uid} from the queue")
    return 0


def _lock(args: argparse.Namespace) -> int:
    with _operator(args) as operator:
        operator.lock(args.key, note=args.note)
    print(f"locked; pass --lock-key (or {LOCK_KEY_ENV}) with every command, unlock with the key")
    return 0


def _unlock(args: argparse.Namespace) -> int:
    with _operator(args) as operator:
        operator.unlock(args.key)
    print("unlocked")
    return 0


def _shell(args: argparse.Namespace) -> int:
    profile = find_profile(args.profile)
    env = {**os.environ, STAND_ENV: str(find_stand(args.stand, profile))}
    command = [sys.executable, "-m", "IPython", f"--profile-dir={profile}", *args.ipython_args]
    sys.stdout.flush()
    os.execve(sys.executable, command, env)  # IPython takes over this process (and Ctrl-C)
