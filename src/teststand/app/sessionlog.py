"""Every session's log file: the shell, the queue worker and the demo each write a rotating log
under the stand's data directory (`<data_dir>/logs/<session>.log`, 5 files of 5 MB) with every
plan (start and end), every command typed at the prompt and every error.
`teststand logs` shows where they are."""

from __future__ import annotations

import logging
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any

LOG_FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"
MAX_BYTES, BACKUPS = 5_000_000, 5
log = logging.getLogger("teststand.session")


def log_dir(data_path: Path) -> Path:
    return data_path.expanduser() / "logs"


def start_session_log(data_path: Path, session: str) -> Path:
    """Log `teststand.*` (INFO and up) and every warning or error to `<data>/logs/<session>.log`.
    Returns the file; a second call for the same file adds nothing."""
    path = log_dir(data_path) / f"{session}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    for handler in root.handlers:
        if isinstance(handler, RotatingFileHandler) and Path(handler.baseFilename) == path:
            return path
    handler = RotatingFileHandler(path, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.setLevel(logging.INFO)
    root.addHandler(handler)
    if root.level > logging.WARNING or root.level == logging.NOTSET:
        root.setLevel(logging.WARNING)
    logging.getLogger("teststand").setLevel(logging.INFO)
    log.info("%s session started", session)
    return path


def _plan_logger(name: str, doc: dict[str, Any]) -> None:
    if name == "start":
        args = doc.get("plan_args") or {}
        log.info(
            "plan %s started: run %s, %s", doc.get("plan_name", "?"), doc.get("uid"), args or "-"
        )
    elif name == "stop":
        reason = f": {doc['reason']}" if doc.get("reason") else ""
        log.info("run %s ended: %s%s", doc.get("run_start"), doc.get("exit_status"), reason)


def log_plans(RE: Any) -> None:
    """Log the start (plan, arguments) and the end (exit status, reason) of every run."""
    RE.subscribe(_plan_logger)


def log_commands(shell: Any) -> None:
    """Log every cell run at the IPython prompt."""

    def before(info: Any) -> None:
        cell = str(getattr(info, "raw_cell", "")).strip()
        if cell:
            log.info("command: %s", cell)

    shell.events.register("pre_run_cell", before)


def without_traceback(record: logging.LogRecord, error: BaseException) -> None:
    """Make `record` one line: its message, then the error's type and text, no traceback."""
    record.msg = f"{record.getMessage()}: {type(error).__name__}: {error}"
    record.args, record.exc_info, record.exc_text = None, None, None
