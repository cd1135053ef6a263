"""Reading the RE Manager's console output and tracebacks: the error of a failed item or of a
failed environment start."""

from __future__ import annotations

import re
from pathlib import Path

_LOG_RECORD = re.compile(r"^\[[A-Z] \d{4}-\d\d-\d\d ")
_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Busy|Refused|Unreachable)): ")


def error_type(traceback: str) -> str | None:
    """The class name of the exception a traceback ends with, e.g. "PlanArgumentError"."""
    for line in reversed(traceback.strip().splitlines()):
        if found := _EXCEPTION_LINE.match(line):
            return found.group(1).rsplit(".", 1)[-1]
    return None


def startup_error(console: str) -> tuple[str, str | None] | None:
    """(message, exception class name) of a failed environment start in the manager's console
    output: the text after "Error while executing script", or the traceback's last line."""
    lines = console.splitlines()
    error_type = None
    for line in lines:
        if found := _EXCEPTION_LINE.match(line):
            error_type = found.group(1).rsplit(".", 1)[-1]
    for n in range(len(lines) - 1, -1, -1):
        if lines[n].startswith("Error while executing script"):
            text = [lines[n].split(": ", 1)[-1]]
            for line in lines[n + 1 :]:
                if _LOG_RECORD.match(line):
                    break
                text.append(line)
            script = lines[n].split("'")[1] if "'" in lines[n] else ""
            where = f"{Path(script).name}: " if script else ""
            return where + "\n".join(text).strip(), error_type
    for line in reversed(lines):
        if _EXCEPTION_LINE.match(line):
            return line.split(": ", 1)[1], error_type
    return None
