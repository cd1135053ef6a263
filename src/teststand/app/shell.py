"""What the IPython session adds at the prompt: `wa()`, `read(device)` and `where()`, a pause
message that says which slots hold high voltage, and stand errors shown in one line (`%tb`
shows the traceback)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

from teststand.app.readings import format_value, group_lines, read_group, read_groups, summary
from teststand.app.sessionlog import without_traceback
from teststand.errors import TeststandError

T = TypeVar("T")
#: Bias magnitudes up to this (V) count as "off" in the pause message.
HELD_BIAS = 1.0
log = logging.getLogger("teststand.app.shell")


def on_bluesky_loop(coroutine: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    """Run a coroutine on the RunEngine's event loop (where the devices live); wait for it."""
    from bluesky.run_engine import call_in_bluesky_event_loop

    result: T = call_in_bluesky_event_loop(coroutine, timeout=timeout)
    return result


class PauseMessage:
    """`RE.pause_msg` of the session: which slots the paused plan holds at high voltage, and how
    to make the stand safe. Read when the pause is reported, from the slots' bias readbacks."""

    def __init__(self, slots: Mapping[int, Any]) -> None:
        self.slots = slots

    def held(self) -> dict[int, float]:
        """Slot number -> bias (V) of the slots whose |bias| is above `HELD_BIAS`."""

        async def read() -> dict[int, float]:
            found = {n: float(await slot.bias.get_value()) for n, slot in self.slots.items()}
            return {n: v for n, v in found.items() if abs(v) > HELD_BIAS}

        return on_bluesky_loop(read(), timeout=5.0)

    def __str__(self) -> str:
        try:
            held = self.held()
        except Exception as exc:  # the message must come out whatever the instruments do
            state = f"The HV could not be read ({type(exc).__name__}: {exc}): assume it is on."
        else:
            if held:
                slots = ", ".join(f"slot {n} at {v:.0f} V" for n, v in sorted(held.items()))
                state = f"The paused plan holds the HV: {slots}."
            else:
                state = f"No slot is biased (every |bias| is at most {HELD_BIAS:g} V)."
        return (
            f"\nThe RunEngine is paused. {state}\n"
            "To make the stand safe: RE.abort() (the plan's cleanup brings HV to 0 V), or after "
            "RE.stop() or RE.halt(): RE(hv_off()).\n"
            "RE.resume()    go on with the plan (the HV stays as it is meanwhile)\n"
            "RE.abort()     clean up (HV to 0 V), end the run as aborted\n"
            "RE.stop()      clean up (HV to 0 V), end the run as a success\n"
            "RE.halt()      stop at once, no cleanup: the HV stays up; then RE(hv_off())\n"
        )


def show_stand_error(
    shell: Any, kind: type[BaseException], value: BaseException, tb: Any, tb_offset: Any = None
) -> None:
    """IPython's handler for `TeststandError`: one line; `%tb` prints the traceback."""
    sys.last_type, sys.last_value, sys.last_traceback = kind, value, tb
    log.error("%s: %s", kind.__name__, value)
    print(f"{kind.__name__}: {value}  (%tb shows the traceback)", file=sys.stderr)


class _OneLineStandErrors(logging.Filter):
    """Log records about a `TeststandError` (bluesky's "Run aborted") without the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], TeststandError):
            without_traceback(record, record.exc_info[1])
        return True


def install_error_display(shell: Any) -> None:
    """Stand errors in one line at the prompt and in the log on the terminal."""
    shell.set_custom_exc((TeststandError,), show_stand_error)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            continue  # the session log keeps the tracebacks
        if not any(isinstance(f, _OneLineStandErrors) for f in handler.filters):
            handler.addFilter(_OneLineStandErrors())


def shell_helpers(stand: Any) -> dict[str, Callable[..., None]]:
    """`wa()`, `read(device)` and `where()` for the session's namespace."""

    def wa() -> None:
        """Every instrument's and slot's readings, with units."""
        devices = [*stand.instruments.values(), *stand.slots.values()]
        groups = on_bluesky_loop(read_groups(devices))
        print("\n".join([*group_lines(groups), summary(groups)]))

    def read(device: Any) -> None:
        """One device's readings and configuration, with units (`read(slot3)`, `read(hv)`)."""
        print("\n".join(group_lines([on_bluesky_loop(read_group(device))])))

    def where() -> None:
        """One line per slot: module, bias, leakage current, temperature."""
        print("\n".join(on_bluesky_loop(_where(stand))))

    return {"wa": wa, "read": read, "where": where}


async def _where(stand: Any) -> list[str]:
    lines = []
    for number, slot in stand.slots.items():
        module = await slot.module_id.get_value() or "(empty)"
        try:
            bias = format_value(await slot.bias.get_value(), "V")
            current = format_value(await slot.leakage_current.get_value(), "A")
            text = f"bias {bias[0]:>7} {bias[1]}  I {current[0]:>8} {current[1]}"
            if hasattr(slot, "temperature"):
                temperature = format_value(await slot.temperature.get_value(), "degC")
                text += f"  T {temperature[0]:>6} {temperature[1]}"
        except (TeststandError, TimeoutError) as exc:
            text = f"NOT READ ({type(exc).__name__}: {exc})"
        lines.append(f"slot {number}  {module:<16} {text}")
    return lines
