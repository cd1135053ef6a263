"""Mutation testing of the safety-critical modules (`make mutate`; not part of `make test`).

Each group is a few modules and the tests that cover them. mutmut 3 imports the mutated code
from `mutants/src` by the module names it derives from the file paths, so the mapped folders
(devices/, plans/, callbacks/, sim/) are first staged under one `src/teststand/`, as in the
wheel, in build/mutation/GROUP/; mutmut runs there ([tool.mutmut] of pyproject.toml, plus the
group's `only_mutate` and tests), on one worker by default (the machine is shared). A group
may mutate only some functions of a module (mutmut's mutant names, `*` wildcards). Writes the
date, the scores per module and every survivor with why it may stay to benchmarks/mutation.json
(groups not run keep their last result) and prints the scores as JSON last. A mutant counts as
detected when a test failed on it (killed) or it made the tests hang (timeout). With `--budget`,
a group stops after that many seconds; the mutants not run then are counted as "not checked" and
left out of its score. Each module also gets `score_without_equivalent`: the survivors explained
as equivalent (the same behaviour as the original) left out, the usual mutation score.

`--resume` goes on with a group's last run where it stopped (its budget spent, or interrupted),
in its staged tree: mutmut runs only the mutants that have no result yet.

`--recheck` runs only the last survivors that EXPLAINED does not explain again (`--recheck all`:
every survivor; `--only GLOB` narrows either to some mutants), in the group's staged tree, with
today's tests: a quick check after adding tests (the source must not have changed since the
whole run).

    python benchmarks/mutation.py [GROUP ...] [--max-children N] [--budget S] [--resume]
                                  [--recheck [all] [--only GLOB ...]]
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "mutation.json"
MUTMUT = str(Path(sys.executable).with_name("mutmut"))
STAGE = ROOT / "build" / "mutation"
MAPPED = {"devices": "devices", "plans": "plans", "callbacks": "callbacks", "sim": "sim"}
#: mutmut statuses that count as detected: a test failed, or the tests hung (timeout)
DETECTED = ("killed", "timeout")
#: the start of the reason given to a survivor that EXPLAINED does not explain
UNEXPLAINED = "not explained"
#: mutmut's status of a mutant not run (the group's time budget ran out): left out of the score
NOT_RUN = "not checked"
#: the start of the reason of a survivor that behaves as the original code does
EQUIVALENT = "equivalent:"

#: group -> (modules mutated, as repository paths; the tests that cover them)
GROUPS: dict[str, tuple[list[str], list[str]]] = {
    "transport": (
        ["src/teststand/transport/core.py"],
        ["tests/core/test_transport.py"],
    ),
    "storage": (
        [
            "src/teststand/storage/journal.py",
            "src/teststand/storage/replay.py",
            "src/teststand/storage/runwriter.py",
            "callbacks/journal.py",
            "callbacks/tiled_writer.py",
        ],
        [
            "tests/storage/test_replay.py",
            "tests/callbacks/test_live_writer.py",
            "tests/callbacks/test_journal_disk.py",
        ],
    ),
    "caen": (
        ["devices/caen/client.py", "devices/caen/protocol.py"],
        ["tests/devices/test_caen_device.py", "tests/devices/test_parsers.py"],
    ),
    "plans": (
        ["plans/common.py", "plans/iv.py"],
        [
            "tests/plans/test_iv.py",
            "tests/plans/test_hv.py",
            "tests/plans/test_slots.py",
            "tests/plans/test_waits.py",
        ],
    ),
    "iv_analysis": (
        ["callbacks/iv_analysis.py"],
        ["tests/callbacks/test_iv_analysis.py"],
    ),
    "safety": (
        ["src/teststand/safety/state.py", "src/teststand/safety/watchdog.py"],
        ["tests/safety/test_state.py", "tests/safety/test_watchdog.py"],
    ),
}

#: group -> the only functions mutated (mutmut's mutant names; default: the whole modules)
FUNCTIONS: dict[str, list[str]] = {
    # the lines that decide whether data is kept: journal writes and syncs, the completeness
    # checks of a stored run, and the journal's deletion after them (live and on replay)
    "storage": [
        *(
            f"teststand.storage.journal.xǁJournalFileǁ{name}__*"
            for name in ("append", "sync", "close", "_write_backlog")
        ),
        *(
            f"teststand.storage.replay.x_{name}__*"
            for name in ("replay_journal", "_finish", "recovered_stop")
        ),
        *(
            f"teststand.storage.runwriter.x_{name}__*"
            for name in ("stored_problems", "rows_against_stop")
        ),
        *(f"teststand.callbacks.journal.xǁRunJournalǁ{name}__*" for name in ("append", "detach")),
        *(
            f"teststand.callbacks.tiled_writer.xǁLiveTiledWriterǁ{name}__*"
            for name in ("_finish", "_replay", "_fail")
        ),
    ],
    "plans": [
        "teststand.plans.common.*",
        *(
            f"teststand.plans.iv.x_{name}*"
            for name in ("iv_scan", "check_range", "step_slots", "check_points", "_stop_reason")
        ),
    ],
}

#: group -> mutmut settings of its own. A test that starts a Tiled server (a session fixture)
#: spends seconds before its first assertion, which mutmut's timeout (from the test's own
#: duration) does not foresee: without more time, every mutant such a test covers "timed out".
SETTINGS: dict[str, dict[str, float]] = {
    group: {"timeout_constant": 60.0} for group in ("storage", "iv_analysis")
}

#: Survivors looked at and why they stay: a pattern of the mutant's changed lines -> the reason
#: (the first that matches; the generic message-text pattern last).
EXPLAINED: list[tuple[str, str]] = [
    (
        r"terminator=(None|\"crlf\")|baudrate=|timeout=[12]\.0",
        "equivalent: the transport's defaults are the same (CRLF, 9600 baud, 1 s), and a pty "
        "has no baud rate",
    ),
    (r"ramp_down_name = ", "equivalent: on_open() always sets the discovered name"),
    (r"await self\.mon\(name, 1\)", "equivalent: any channel answers the discovery read"),
    (
        r"lstrip\(\"\+-\"\)\.rpartition",
        "equivalent: a checked value has at most one point, so the two halves only swap, for "
        "every value of the read alike",
    ),
    (r"if with_decimals else 1", "equivalent: the same constant for every value of the read"),
    (r"lstrip\(\"XX\+-XX\"\)", "equivalent: a checked value never begins with an X"),
    (
        r"accepts none of|as its ramp-down parameter",
        "not reached: every simulator (and supply known) has RDW or RDWN; the error for one "
        "with neither has no test (its text only)",
    ),
    (r"AssertionError\(", "unreachable: the retry loop returns or raises on its last attempt"),
    (r"strip\(\"XX", "equivalent: no reply of these instruments begins or ends with an X"),
    (r"hint: str = \"XXXX\"", "equivalent: every caller of _error gives its own hint"),
    (r"expect_reply=None|self\._closed = None", "equivalent: None is false, as False is"),
    (
        r"reading = yield Msg\(|reading: Readings \| None = \"\"|while reading is not None",
        "no test in the group: read_now reads again only after a rewind interrupted the read",
    ),
    (
        r"tasks = yield Msg\(|while False:|result: T = ",
        "no test in the group: call() serves the temperature and stability plans (their tests)",
    ),
    (
        r"abs\(b \+ a\)|pairwise\(\[1\.0|ramp_timeout\(1\.0, step\)",
        "not killed: only changes the first step's ramp timeout a little; the tests' ramps arrive "
        "well within it",
    ),
    (
        r"idempotent: bool = True\) -> None|_exchange\(command, None, None, None",
        "not killed: a write's retry after a lost link (the simulator's cable pull was not seen "
        "at the write deterministically enough for a test)",
    ),
    (
        r"self\._stale = 1\.0",
        "timing only: one second of line quiet waited before the next command, no reply misread "
        "(the tests do not time it)",
    ),
    (r"\) \* 1001", "equivalent within the measurement: 0.1 % of a round-trip time"),
    (r"self\.spec = None", "equivalent: nothing reads Transport.spec (the link keeps its own)"),
    (
        r"self\._transport: Transport \| None = \"\"",
        "equivalent: __aexit__ runs only after __aenter__ has set it",
    ),
    (
        r"hasattr\((value|None), \"(item|XXitemXX|ITEM)\"\)|value\.item\(\)",
        "unreached: every numpy value (array or scalar) has tolist(); item() serves only a value "
        "with item() and no tolist(), which no device hands over",
    ),
    (
        r"self\._primary\.get\(doc\[\"descriptor\"\], (None|\"XXXX\")?\)",
        'equivalent: the default only has to be no run\'s uid ("", None and "XXXX" are none)',
    ),
    (
        r"doc\.get\(\"name\"\) == \"primary\" or doc\[\"run_start\"\]",
        "not killed: another stream of an IV run is analysed too only if it carries the slots' "
        "IV keys, which no plan's baseline or monitor stream does",
    ),
    (
        r"if slot in run\.stops and keys\.state not in data",
        "not killed: once a slot stops, the plans keep its state at that stop reason in every "
        "later event, so it is skipped either way",
    ),
    (
        r"contextlib\.suppress\(None\)",
        "equivalent on Python 3.11: stop() pokes the loop before cancelling it, so its wait_for "
        "ends on the wake-up and drops the cancellation; the loop returns on _stopping and no "
        "CancelledError reaches the suppress",
    ),
    (
        r"(?m)^\+.*create_task\((again|self\._safe|self\._loop)\(\), "
        r"(name=(None|\"XX(safe|watchdog-confirm|watchdog)XX\"|"
        r"\"(SAFE|WATCHDOG-CONFIRM|WATCHDOG)\"))?\)$",
        "equivalent: a task's name shows only when debugging",
    ),
    (
        r"(?m)or \"(NONE|XXnoneXX)\"$",
        "not reachable: only SAFE and ERROR allow no requested transition, and a request there "
        "is refused as latched before the list of transitions is made",
    ),
    (
        r"(?m)^\+\s+self\.(snapshot|_task)[^=]*= \"\"$|^\+\s+self\.(findings|pending)[^=]*= None",
        "equivalent: start() sets it (the reader's first snapshot, the check loop's task, a "
        "check's findings) before anything reads it",
    ),
    (
        r"(?m)^\+\s+(self\._stopping|abandoned) = None$",
        "equivalent: None is as false as False until it is set True",
    ),
    (
        r"(?m)^\+\s+self\.checks = 1$",
        "not killed: the count of checks is shown (WATCHDOG:CHECKS) and the tests compare only "
        "its differences",
    ),
    (
        r"(?m)LiveClock\(max_step=max\(|paused_hv_hold, \)$|poll_period, \)$",
        "not reached by the tests: the clock's step limit (and sharing it) matters only when the "
        "IOC's process was stopped for longer than a step (a suspended VM), which no test does",
    ),
    (
        r"self\._reading_again = None$",
        "not killed: the read-again still starts at once; only a second one overlapping it is no "
        "longer skipped (the transport serializes them) and stop() cannot cancel it",
    ),
    (
        r"awaits confirmation|for f in self\.pending\)",
        "not reached by the tests: a finding still awaits confirmation after _check_now's second "
        "read only when that read fails; only the refusal's text (or its type) changes",
    ),
    (
        r"wait = (None|max\()|wait_for\(self\._wake\.wait\(\)",
        "equivalent while the instruments are polled: every answer or failed read of one wakes "
        "the check at once, so the loop's own period only paces checks the reads already drive",
    ),
    (
        r"-\s+log\.exception\(\"watchdog check failed\"\)",
        "log text only: no test makes a check raise (the traceback is logged either way)",
    ),
    (
        r"StandState\.RUN or self\.hv_up",
        "equivalent in effect: HV up outside RUN trips the stand (the check a READY or RUN request "
        "runs first), so such a request is refused either way, only with another text",
    ),
    (
        r"pts = sorted\(valid, (key=None)?\)",
        "equivalent for scans: an IVPoint sorts by its voltage first, and no two points of one "
        "slot's scan share a voltage",
    ),
    (
        r"doc\.get\(\"exit_status\", (None|\"SUCCESS\")?\)",
        "equivalent: every RunStop document carries exit_status (event-model's schema requires "
        "it), so the default is never used",
    ),
    (
        r"doc\.get\(\"reason\", (None)?\)",
        'equivalent: a stop without a reason and one with an empty reason (None or "") are '
        "both false where the reason is used",
    ),
    (
        r"\* 1000001\.0:",
        "equivalent within the printed precision: a change of 1 ppm, below the digits the "
        "reasons print (6 significant, or 2 decimals of µA/cm²)",
    ),
    (
        r"(?m)^\+.*zip\([^()]*,\s*(strict=(None|False))?\s*\)",
        "equivalent: the sequences zipped have equal lengths by construction (one per channel "
        "or slot of the same list, a gather's results, a history's pairs, two columns of one "
        "table)",
    ),
    (r"Msg\(\"wait\", group=group\)", "equivalent: a Msg's object defaults to None"),
    (
        r"(?m)^\+\s+group = None$",
        "equivalent: bluesky files a set without a group under None, and the wait for group None "
        "waits for it",
    ),
    (
        r"abs\(v\) > ZERO_TOLERANCE|time\.monotonic\(\) >= deadline|\) >= tolerances\[number\]"
        r"|current > COMPLIANCE_FRACTION|if setpoint <= floor:",
        "equivalent in practice: the boundary of a measured value or of the clock (a reading equal "
        "to its limit to the last bit), which no test can place a reading on",
    ),
    (
        r"len\(history\) >= 1",
        "equivalent: find_breakdown compares a point with the one 5 V before it, so with one "
        "point it finds none",
    ),
    (
        r"await asyncio\.sleep\(1\.2\)|if isinstance\(d, float\)\), default=1\.0\)",
        "timing only: the wait for 0 V reads less often, or waits 1 s more when no channel's "
        "ramp-down time could be read; the same channels are named in the end",
    ),
    (
        r"voltage\.get_value\(\)\), 1\.0\)",
        "timing only: the wait for 0 V is sized by a ramp down to 1 V instead of 0 V, shorter by "
        "1 V at the channel's rate (milliseconds of its margin of seconds)",
    ),
    (
        r"setpoint\.get_value\(cached=None\)",
        "not killed: nothing subscribes to a set point while the zero waits in the tests; with a "
        "subscriber (a display, a plan's monitor) None reads that cache, and a set point written "
        "late could be missed: the check reads the supply (cached=False) for that reason",
    ),
    (
        r"if \(reading\) and False else",
        "equivalent: the bias read again right after the point's reading is the same settled value",
    ),
    (
        r"\"XX, XX\"\.join\(sorted\(status\.faults\)\)",
        "equivalent with one fault flag: a trip or kill sets one (TRIP, KILL), and a join of one "
        "is that flag",
    ),
    (
        r'doc\.get\("time", 1\.0\)',
        "equivalent: documents carry epoch times (about 1.7e9 s), so a default of 1 s for a "
        "document without a time (a stream resource) never becomes the latest",
    ),
    (
        r'(?m)^\+\s+run\.failed = None$|^\+\s+run\.writer = ""$',
        "equivalent: a run's writer is dropped at its first failure, and after it every write "
        'or verification of that run is skipped (None) or fails (""): its journal stays and '
        "one warning names it either way",
    ),
    (
        r"time\.monotonic\(\) - self\.replay_interval\)",
        "not killed, dead code: each replay schedules the next one interval later, so the "
        "original line never moves it; the mutant replays at once after a failed run. The line "
        "goes with the next whole run of the group",
    ),
    (
        r"if self\._fd (<= 0|< 1):",
        "equivalent: a journal's descriptor is never 0 (standard input stays open)",
    ),
    (
        r"(?m)^\+    self\._count -= 1$",
        "equivalent: Python's modulo of a negative count is 0 at every thousandth document too "
        "(-1000 % 1000 == 0)",
    ),
    (
        r"(?m)^\+        self\._latest = None$",
        "equivalent: every bluesky document names its run, descriptor or resource; one whose "
        "owner was never seen belongs to a run whose start was not seen either (subscribed "
        "after it), which has no file either way",
    ),
    (
        r"unlink\(missing_ok=(None|False)\)",
        "not killed: a verified run's journal is gone before this line only if another process "
        "replayed it between its close and here; no test races a replay against the writer",
    ),
    (
        r"(?m)^-            self\.path,\n\+            None,$",
        "message text only: the path in the error about documents that close could not write; "
        "the full-disk test checks the writes' own error and that nothing is lost",
    ),
    (
        r"read\(columns=None\)",
        "equivalent: all of a stream's columns include seq_num and time; it only reads more",
    ),
    (
        r'"the run is not in tiled"',
        "message text only: the case of one word of a reason that keeps the journal either way",
    ),
    (
        r"problems\.append\(None\)",
        "not killed: a stop document or an event table missing from a run that Tiled holds is "
        "reached only when Tiled acknowledges metadata and loses it (the test proxy loses rows, "
        "not metadata); on replay any problem rewrites the run alike",
    ),
    (
        r'rows = list\(zip\(table\["time"\], strict=True\)\)',
        "equivalent: a row written twice repeats its time, and a rewound event comes again with "
        "a new one, so the time alone tells them apart as the (seq_num, time) pair does",
    ),
    (
        r"(?m)^- {12}continue\n\+ {12}break$",  # stored_problems' loop over the streams
        "equivalent in effect: a stream without its table is already a problem that keeps the "
        "journal (or rewrites the run); the other streams would only add to its message",
    ),
    (
        r"(Error|Refused|Timeout)\(None\)|\"XX[^\"]*XX\"|[A-Z ]{12,}\"",
        "message text only: the tests check the error's type and the words that matter, not the "
        "whole sentence",
    ),
]


def staged_path(path: str) -> str:
    """Where a repository file lives in the staged tree (`devices/x.py` -> `src/teststand/...`)."""
    top, _, rest = path.partition("/")
    return f"src/teststand/{MAPPED[top]}/{rest}" if top in MAPPED else path


def module_name(path: str) -> str:
    return staged_path(path).removeprefix("src/").removesuffix(".py").replace("/", ".")


def stage(group: str) -> Path:
    """A fresh copy of the package as installed, the tests, and a pyproject for this group."""
    where = STAGE / group
    shutil.rmtree(where, ignore_errors=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis")
    shutil.copytree(ROOT / "src" / "teststand", where / "src" / "teststand", ignore=ignore)
    for folder, name in MAPPED.items():
        shutil.copytree(ROOT / folder, where / "src" / "teststand" / name, ignore=ignore)
    for folder in ("tests", "profile_collection"):
        shutil.copytree(ROOT / folder, where / folder, ignore=ignore)
    write_settings(group, where)
    return where


def write_settings(group: str, where: Path) -> None:
    """The staged pyproject: the repository's, with the group's modules and tests for mutmut."""
    modules, tests = GROUPS[group]
    text = (ROOT / "pyproject.toml").read_text()
    base = tomllib.loads(text)["tool"]["mutmut"]
    settings = {
        **base,
        "only_mutate": [staged_path(m) for m in modules],
        "pytest_add_cli_args_test_selection": tests,
        **SETTINGS.get(group, {}),
    }
    lines = [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    text = re.sub(r"\[tool\.mutmut\]\n(?:[^\[\n].*\n|\n)*", "", text)
    (where / "pyproject.toml").write_text(text + "\n[tool.mutmut]\n" + "\n".join(lines) + "\n")


def explain(diff: str) -> str:
    """Why a survivor may stay, from EXPLAINED, or "not explained" (a test is missing)."""
    changed = "\n".join(
        line for line in diff.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")
    )
    for pattern, reason in EXPLAINED:
        if re.search(pattern, changed):
            return reason
    return f"{UNEXPLAINED}: a test is missing"


def selected(name: str, group: str) -> bool:
    """Whether a mutant is one of the group's (FUNCTIONS), so counts in its score."""
    patterns = FUNCTIONS.get(group)
    return patterns is None or any(fnmatch.fnmatchcase(name, p) for p in patterns)


def run_mutmut(command: list[str], where: Path, env: dict[str, str], budget: float | None) -> None:
    """`mutmut run`, interrupted (as by Ctrl-C: its results so far are kept) after `budget` s."""
    with (where / "mutmut.log").open("w") as log:
        process = subprocess.Popen(
            command,
            cwd=where,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            # a shell's background job ignores SIGINT, and so would mutmut: the budget needs it
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        try:
            process.wait(budget)
        except subprocess.TimeoutExpired:
            print(f"time budget of {budget:g} s spent: stopping", file=sys.stderr, flush=True)
            process.send_signal(signal.SIGINT)
            try:
                process.wait(120)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def statuses_of(where: Path, env: dict[str, str]) -> list[tuple[str, str]]:
    """(mutant name, mutmut status) of every mutant of the staged tree `where`."""
    listing = subprocess.run(
        [MUTMUT, "results", "--all", "true"], cwd=where, env=env, capture_output=True, text=True
    ).stdout
    pairs = (line.strip().rpartition(": ") for line in listing.splitlines() if line.strip())
    return [(name, status) for name, _, status in pairs]


def restage_tests(group: str) -> Path:
    """The group's last staged tree with today's tests and test selection, and no test
    statistics (mutmut collects them again, so that new tests count)."""
    where = STAGE / group
    if not (where / "mutants").is_dir():
        raise SystemExit(f"{group}: no earlier run in {where}; run the whole group first")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis")
    for tree in (where / "tests", where / "mutants" / "tests"):
        shutil.rmtree(tree, ignore_errors=True)
        shutil.copytree(ROOT / "tests", tree, ignore=ignore)
    (where / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)
    write_settings(group, where)  # today's test selection (a test file added to the group)
    return where


def run_group(
    group: str,
    max_children: int,
    budget: float | None = None,
    recheck: list[str] | None = None,
    resume: bool = False,
) -> dict[str, object]:
    """Mutate the group (or, with `recheck`, run only those mutants again with today's tests;
    with `resume`, go on with its last run in the same staged tree)."""
    if resume:
        where = STAGE / group
        if not (where / "mutants").is_dir():
            raise SystemExit(f"{group}: no earlier run in {where} to resume")
    else:
        where = stage(group) if recheck is None else restage_tests(group)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    started = time.monotonic()
    names = FUNCTIONS.get(group, []) if recheck is None else recheck
    if resume:  # mutmut runs every mutant it is named again: name only those with no result
        names = [
            name
            for name, status in statuses_of(where, env)
            if status == NOT_RUN and selected(name, group)
        ]
        if not names:
            print(f"{group}: every mutant has a result; nothing to resume", file=sys.stderr)
    if names or not resume:
        command = [MUTMUT, "run", "--max-children", str(max_children), *names]
        run_mutmut(command, where, env, budget)
    statuses: dict[str, Counter[str]] = {module_name(m): Counter() for m in GROUPS[group][0]}
    survivors: dict[str, str] = {}
    for name, status in statuses_of(where, env):
        module = name.split(".x_")[0].split(".xǁ")[0]
        if module not in statuses or not selected(name, group):
            continue
        statuses[module][status] += 1
        if status not in (*DETECTED, NOT_RUN):
            diff = subprocess.run(
                [MUTMUT, "show", name], cwd=where, env=env, capture_output=True, text=True
            ).stdout
            survivors[name] = diff.split("\n", 1)[-1].strip()
    modules = {}
    for module, counts in statuses.items():
        total = sum(counts.values())
        detected = sum(counts[status] for status in DETECTED)
        run = total - counts[NOT_RUN]  # a run stopped by its budget leaves some not checked
        modules[module] = {
            "mutants": total,
            "detected": detected,
            "score": round(detected / run, 3) if run else None,
            **counts,
        }
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "tests": GROUPS[group][1],
        **({"functions": FUNCTIONS[group]} if group in FUNCTIONS else {}),
        "seconds": round(time.monotonic() - started),  # of this run alone when resumed
        **({"resumed": True} if resume else {}),
        "modules": modules,
        "survivors": {
            name: {"diff": diff, "why": explain(diff)} for name, diff in survivors.items()
        },
    }
    count_equivalents(result)
    return result


def count_equivalents(result: dict[str, Any]) -> None:
    """Per module: its survivors explained as equivalent (a reason that starts "equivalent:"),
    and the score without them (`score_without_equivalent`), the usual mutation score."""
    for module, entry in result["modules"].items():
        equivalent = sum(
            1
            for name, survivor in result["survivors"].items()
            if name.startswith(module + ".") and survivor["why"].startswith(EQUIVALENT)
        )
        run = entry["mutants"] - entry.get(NOT_RUN, 0) - equivalent
        entry["equivalent"] = equivalent
        entry["score_without_equivalent"] = round(entry["detected"] / run, 3) if run else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("groups", nargs="*", help=f"of {', '.join(GROUPS)} (default: all)")
    parser.add_argument("--max-children", type=int, default=1, help="workers (default: 1)")
    parser.add_argument("--explain", action="store_true", help="only re-explain the survivors")
    parser.add_argument(
        "--budget", type=float, help="stop each group after this many seconds (partial score)"
    )
    parser.add_argument(
        "--resume", action="store_true", help="go on with each group's last run where it stopped"
    )
    parser.add_argument(
        "--recheck",
        nargs="?",
        const="unexplained",
        choices=["unexplained", "all"],
        help="run only the last survivors again (those not explained, or all), with today's "
        "tests (the source unchanged)",
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="GLOB",
        help="with --recheck: only the survivors whose names match (mutmut's names, `*` wildcards)",
    )
    args = parser.parse_args()
    unknown = set(args.groups) - set(GROUPS)
    if unknown:
        parser.error(f"unknown group(s) {', '.join(sorted(unknown))}; known: {', '.join(GROUPS)}")
    if args.resume and args.recheck:
        parser.error("--resume goes on with a whole run; --recheck runs survivors again: one")
    args.groups = args.groups or list(GROUPS)
    results = json.loads(RESULT.read_text()) if RESULT.exists() else {}
    if args.explain:  # only re-explain the stored survivors
        for result in results.values():
            for survivor in result["survivors"].values():
                survivor["why"] = explain(survivor["diff"])
            count_equivalents(result)
        RESULT.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
        args.groups = []
    for group in args.groups:
        print(f"mutating {group}: {', '.join(GROUPS[group][0])}", file=sys.stderr, flush=True)
        recheck = None
        if args.recheck:  # all survivors, or those that EXPLAINED does not explain
            survivors = results[group]["survivors"]
            recheck = [
                name
                for name, survivor in survivors.items()
                if args.recheck == "all" or explain(survivor["diff"]).startswith(UNEXPLAINED)
                if not args.only or any(fnmatch.fnmatchcase(name, p) for p in args.only)
            ]
            if not recheck:
                print(f"{group}: every survivor is explained; nothing to recheck", file=sys.stderr)
                continue
        result = run_group(group, args.max_children, args.budget, recheck, args.resume)
        if recheck is not None:
            result["rechecked"] = len(recheck)
        # read again: another run (of another group) may have written its result meanwhile
        results = json.loads(RESULT.read_text()) if RESULT.exists() else {}
        results[group] = result
        RESULT.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
        for name, survivor in results[group]["survivors"].items():
            print(f"survived: {name}\n{survivor['diff']}\n", file=sys.stderr)
    print(json.dumps({g: {"date": r.get("date"), **r["modules"]} for g, r in results.items()}))


if __name__ == "__main__":
    main()
