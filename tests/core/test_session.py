"""What the IPython session adds: stand errors in one line (%tb for the traceback), the shell's
reading helpers, and the rotating session log with every plan, command and error."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from logging.handlers import RotatingFileHandler
from pathlib import Path

import bluesky.plans as bp
import pytest
from bluesky import RunEngine
from IPython.core.interactiveshell import InteractiveShell
from ophyd_async.core import init_devices, soft_signal_rw

from teststand.app.sessionlog import log_commands, log_plans, start_session_log
from teststand.app.shell import install_error_display

TESTSTAND = str(Path(sys.executable).parent / "teststand")


@pytest.fixture
def ipython() -> Iterator[InteractiveShell]:
    shell = InteractiveShell.instance()
    yield shell
    InteractiveShell.clear_instance()


@pytest.fixture
def session_log(tmp_path: Path) -> Iterator[Path]:
    path = start_session_log(tmp_path, "shell")
    yield path
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, RotatingFileHandler)]:
        root.removeHandler(handler)
        handler.close()


def test_a_stand_error_is_one_line_and_tb_shows_the_traceback(
    ipython: InteractiveShell, capsys: pytest.CaptureFixture[str], session_log: Path
) -> None:
    install_error_display(ipython)
    log_commands(ipython)
    ipython.run_cell(
        "from teststand.plans.common import PlanArgumentError\n"
        "def check():\n"
        "    raise PlanArgumentError('slot 1: 900 V is above its 250 V limit')\n"
        "check()"
    )
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        "PlanArgumentError: slot 1: 900 V is above its 250 V limit  (%tb shows the traceback)"
    ]
    ipython.run_line_magic("tb", "")
    shown = capsys.readouterr()
    plain = re.sub(r"\x1b\[[0-9;]*m", "", shown.out + shown.err)
    assert "----> 3     raise PlanArgumentError" in plain and len(plain.splitlines()) > 5, plain
    text = session_log.read_text()
    assert "command: from teststand.plans.common import PlanArgumentError" in text
    assert "PlanArgumentError: slot 1: 900 V is above its 250 V limit" in text


def test_the_session_log_has_every_plan(session_log: Path) -> None:
    handler = next(h for h in logging.getLogger().handlers if isinstance(h, RotatingFileHandler))
    assert handler.maxBytes > 0 and handler.backupCount > 0  # it rotates
    assert start_session_log(session_log.parents[1], "shell") == session_log  # added once
    RE = RunEngine(call_returns_result=True)
    log_plans(RE)
    with init_devices():
        voltage = soft_signal_rw(float, 1.0, name="voltage", units="V")
    RE(bp.count([voltage], num=2))
    text = session_log.read_text()
    assert "shell session started" in text
    assert "plan count started: run" in text and "ended: success" in text


def test_teststand_logs_says_where(tmp_path: Path, session_log: Path) -> None:
    done = subprocess.run(
        [TESTSTAND, "logs", "--data", str(tmp_path), "--tail", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert f"session logs: {tmp_path / 'logs'}" in done.stdout
    assert "shell.log" in done.stdout and "shell session started" in done.stdout
