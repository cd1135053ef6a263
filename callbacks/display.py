"""Live display for the IPython session: a table of every run, a live IV plot, progress bars.

`install_display(RE, plots=True)` is what the IPython profile calls; the queueserver worker calls
none of it. Importing this module imports neither matplotlib nor pyplot: the plot draws on a
figure from a factory, `pyplot_figure` in the session (only when plots are asked for) or a bare
`matplotlib.figure.Figure` otherwise. Display callbacks log their failures instead of raising
(bluesky's `make_class_safe`; set BLUESKY_DEBUG_CALLBACKS=1 to raise), so a display problem never
stops a run.

The running plan's point, voltage and settle countdown stay on one status line below the table
(`teststand.callbacks.progress.StatusLine`, on a terminal); table rows erase it and any bars
before they print, so neither garbles the table.

Progress bars are bluesky's `ProgressBarManager` as the RunEngine's waiting hook: it draws a bar
for every status with `watch()`. ophyd-async's `StandardMovable.set` returns such a status and
reports each readback update, so CAEN ramps, slot biasing and chiller or coldbox set points show
bars with no code of their own.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from bluesky.callbacks.core import CallbackBase, LiveTable, make_class_safe
from bluesky.callbacks.mpl_plotting import QtAwareCallback
from bluesky.utils import ProgressBarManager
from event_model import Event, EventDescriptor, RunStart, RunStop

from teststand.callbacks.progress import CLEAR_BELOW, StatusLine, progress, progress_bars
from teststand.callbacks.schema import IVKeys, RunMetadata, read_metadata
from teststand.errors import TeststandError

if TYPE_CHECKING:
    from bluesky import RunEngine
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

log = logging.getLogger("teststand.callbacks.display")

VOLTAGE_KEY = "iv_voltage"  #: the nominal step of an IV run's events (V, magnitude)
VOLTAGE_COLUMN = "step V"  #: its column in the live table
MEASURING = "measuring"
IV_WINDOW = "teststand IV"  #: the pyplot window the session's IV plot reuses
MICROAMPS_PER_AMP = 1e6
MAX_UNHINTED = 10  #: columns of a run whose devices hint nothing
FigureFactory = Callable[[], "Figure"]


class NothingToSave(TeststandError, RuntimeError):
    """The IV plot has no figure yet."""


@dataclass(frozen=True)
class IVSlot:
    """One slot of an IV run: its module and the data keys of its points."""

    slot: str
    module_id: str
    keys: IVKeys

    @property
    def column(self) -> str:
        """The table column of its leakage current, in µA."""
        return f"slot{self.slot} I µA"

    @property
    def label(self) -> str:
        return f"slot {self.slot} · {self.module_id}"

    def measuring(self, data: dict[str, Any]) -> bool:
        """Whether an event's point is a valid IV point of this slot (no state key: assume so)."""
        return bool(data.get(self.keys.state, MEASURING) == MEASURING)


def iv_run(start: RunStart | dict[str, Any]) -> tuple[RunMetadata, list[IVSlot]] | None:
    """The metadata and slots (in slot order) of an IV run's start document, else None."""
    if start.get("test") != "iv":
        return None
    md = read_metadata(dict(start))
    if md is None or not md.iv_keys:
        log.warning(
            "run %s says test 'iv' but its start document does not follow the IV run contract "
            "(callbacks/schema.py RunMetadata with iv_keys); shown as a plain run",
            start.get("uid"),
        )
        return None
    ordered = sorted(md.iv_keys, key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else 0, s))
    return md, [IVSlot(s, md.slots[s].module_id, md.iv_keys[s]) for s in ordered]


def column_label(field: str, info: Mapping[str, Any]) -> str:
    """A table column that says what the field is and its unit: `slot1 bias V` for the bias
    readback named after its slot (its source `slot1:bias` says what it is), `probe-x mm`."""
    word = str(info.get("source", "")).rpartition(":")[2]
    what = f"{field} {word}" if re.fullmatch(r"[a-z_]+", word) and word not in field else field
    return f"{what} {info.get('units') or ''}".strip()


def hinted_fields(start: RunStart | dict[str, Any], descriptor: EventDescriptor) -> list[str]:
    """The fields a descriptor's stream should show: the run's dimensions, then hinted fields;
    with no hint at all, its first `MAX_UNHINTED` scalar fields."""
    fields: list[str] = []
    for dimension, stream in start.get("hints", {}).get("dimensions", []):
        if stream == descriptor["name"]:
            fields.extend(dimension)
    hints: dict[str, Any] = dict(descriptor.get("hints") or {})
    for hint in hints.values():
        fields.extend(hint.get("fields", []))
    shown = [f for f in dict.fromkeys(fields) if f in descriptor["data_keys"]]
    if shown:
        return shown
    scalars = [
        key
        for key, info in descriptor["data_keys"].items()
        if not info.get("shape") and info["dtype"] in ("number", "integer", "string", "boolean")
    ]
    return scalars[:MAX_UNHINTED]


@make_class_safe(logger=log)  # type: ignore[no-untyped-call]  # bluesky is untyped here
class RunTable(CallbackBase):
    """A bluesky `LiveTable` per run, printed to `stream` (default: sys.stdout at print time).

    IV runs: the nominal voltage and each slot's |I| in µA, after a legend of slots and modules;
    a slot's cell is blank once it stopped, and a line says why. Other runs: the hinted fields
    of the primary stream (see `hinted_fields`).
    `table_options` go to `LiveTable` (e.g. `min_width`).
    """

    def __init__(
        self, stream: TextIO | None = None, *, terminal: bool = False, **table_options: Any
    ) -> None:
        super().__init__()
        self.stream = stream
        self.terminal = terminal  # erase below before each line even if `stream` is no tty
        self.table: LiveTable | None = None
        self._options = table_options
        self._start: dict[str, Any] = {}
        self._slots: list[IVSlot] = []
        self._stopped: set[str] = set()
        self._labels: dict[str, str] = {}  # data key -> its column

    def write(self, text: str) -> None:
        """Print a line; on a terminal, first erase the status line and the bars below it."""
        out = sys.stdout if self.stream is None else self.stream
        print((CLEAR_BELOW if self.terminal or out.isatty() else "") + text, file=out)

    def _new_table(self, fields: list[str]) -> None:
        self.table = LiveTable(fields, out=self.write, **self._options)  # type: ignore[no-untyped-call]
        self.table.start(self._start)  # type: ignore[no-untyped-call]

    def start(self, doc: RunStart) -> None:
        # LiveTable's closing line names plan_type, plan_name and scan_id: not every plan sets them
        self._start = {"plan_type": "run", "plan_name": doc.get("test", ""), "scan_id": "", **doc}
        self.table = None
        self._stopped = set()
        found = iv_run(doc)
        self._slots = found[1] if found else []
        if found:
            md, slots = found
            settings = md.iv
            if settings is not None:
                self.write(
                    f"IV {md.stage}: {settings.start:g} to {settings.stop:g} V in {settings.step:g}"
                    f" V steps, compliance {settings.compliance * MICROAMPS_PER_AMP:g} µA"
                    f"{', polarity ' + settings.polarity if settings.polarity else ''}"
                )
            for slot in slots:
                info = md.slots[slot.slot]
                channel = f", {info.hv_channel}" if info.hv_channel else ""
                self.write(f"  slot {slot.slot}: {info.module_id} ({info.sensor}{channel})")
            self._labels = {VOLTAGE_KEY: VOLTAGE_COLUMN}
            self._new_table([VOLTAGE_COLUMN, *(slot.column for slot in slots)])

    def descriptor(self, doc: EventDescriptor) -> None:
        if self.table is None:
            if doc["name"] != "primary":
                return
            fields = hinted_fields(self._start, doc)
            self._labels = {f: column_label(f, doc["data_keys"][f]) for f in fields}
            self._new_table(list(self._labels.values()))
        assert self.table is not None
        keys = dict(doc["data_keys"])
        for key, label in self._labels.items():
            if key in keys:
                keys[label] = keys[key]
        doc = {**doc, "data_keys": keys}
        if self._slots:
            for slot in self._slots:
                if slot.keys.current in keys:
                    keys[slot.column] = {
                        **keys[slot.keys.current],
                        "dtype": "number",
                        "shape": [],
                        "units": "µA",
                        "precision": 3,
                    }
            doc = {**doc, "data_keys": keys}
        self.table.descriptor(doc)  # type: ignore[no-untyped-call]

    def event(self, doc: Event) -> Event:
        if self.table is None:
            return doc
        data = dict(doc["data"])
        for key, label in self._labels.items():
            if key in data:
                data[label] = data[key]
        if self._slots:
            for slot in self._slots:
                current = data.get(slot.keys.current)
                if data.get(slot.keys.state) == "unsettled":
                    self.write(f"  {slot.label}: not settled at this point (not a valid point)")
                elif not slot.measuring(data):
                    if slot.slot not in self._stopped:
                        self._stopped.add(slot.slot)
                        self.write(f"  {slot.label} stopped: {data[slot.keys.state]}")
                elif current is not None:
                    data[slot.column] = abs(float(current)) * MICROAMPS_PER_AMP
        self.table.event({**doc, "data": data})  # type: ignore[no-untyped-call]
        return doc

    def stop(self, doc: RunStop) -> None:
        if self.table is not None:
            self.table.stop(doc)  # type: ignore[no-untyped-call]


def bare_figure() -> Figure:
    """A figure without pyplot (headless; `save()` still works)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(7, 5), layout="constrained")


def pyplot_figure() -> Figure:
    """The session's IV window: pyplot's figure `IV_WINDOW`, reopened if it was closed."""
    import matplotlib.pyplot as plt

    if plt.fignum_exists(IV_WINDOW):
        return plt.figure(num=IV_WINDOW)
    return plt.figure(num=IV_WINDOW, figsize=(7, 5), layout="constrained")


@make_class_safe(logger=log)  # type: ignore[no-untyped-call]
class LiveIVPlot(QtAwareCallback):
    """|I| against |V| of every slot of an IV run, one line per slot, log y, updated per event.

    Each IV run takes a figure from `figure_factory` and clears it; other runs are ignored. Only
    a slot's "measuring" points are drawn; V is the slot's measured bias (the nominal step if the
    event has none). With a Qt backend pass `use_teleporter=None` so drawing happens on the main
    thread (bluesky's QtAwareCallback).
    """

    def __init__(
        self, figure_factory: FigureFactory = bare_figure, *, use_teleporter: bool | None = False
    ) -> None:
        super().__init__(use_teleporter=use_teleporter)  # type: ignore[no-untyped-call]
        self.figure_factory = figure_factory
        self.figure: Figure | None = None
        self.axes: Axes | None = None
        self.lines: dict[str, Line2D] = {}
        self._slots: list[IVSlot] = []
        self._points: dict[str, tuple[list[float], list[float]]] = {}
        self._primary: set[str] = set()

    def start(self, doc: RunStart) -> None:
        self._primary = set()
        found = iv_run(doc)
        self._slots = found[1] if found else []
        if not found:
            return
        md, slots = found
        figure = self.figure_factory()
        figure.clear()
        axes = figure.add_subplot()
        axes.set_yscale("log")
        axes.set_xlabel("|bias| (V)")
        axes.set_ylabel("|leakage current| (A)")
        axes.set_title(f"IV {md.stage} · {md.stand} · scan {doc.get('scan_id', '')}")
        axes.grid(True, which="both", alpha=0.3)
        if md.iv is not None:
            axes.axhline(md.iv.compliance, color="grey", linestyle="--", label="compliance")
        self.lines = {s.slot: axes.plot([], [], marker=".", label=s.label)[0] for s in slots}
        self._points = {s.slot: ([], []) for s in slots}
        axes.legend(loc="upper left", fontsize="small")
        self.figure, self.axes = figure, axes
        figure.canvas.draw_idle()

    def descriptor(self, doc: EventDescriptor) -> None:
        if self._slots and doc["name"] == "primary":
            self._primary.add(doc["uid"])

    def event(self, doc: Event) -> Event:
        if doc["descriptor"] not in self._primary or self.axes is None or self.figure is None:
            return doc
        data = doc["data"]
        for slot in self._slots:
            current = data.get(slot.keys.current)
            bias = data.get(slot.keys.bias, data.get(VOLTAGE_KEY))
            if current is None or bias is None or not slot.measuring(data):
                continue
            voltages, currents = self._points[slot.slot]
            voltages.append(abs(float(bias)))
            currents.append(abs(float(current)))
            self.lines[slot.slot].set_data(voltages, currents)
        self.axes.relim()
        self.axes.autoscale_view()
        self.figure.canvas.draw_idle()
        return doc

    def save(self, path: str | Path) -> Path:
        """Write the present figure (format from the suffix: .png, .pdf, .svg)."""
        if self.figure is None:
            raise NothingToSave("no IV run has been plotted yet: run an IV scan, then save")
        target = Path(path)
        self.figure.savefig(target)
        return target


@dataclass
class Display:
    """What `install_display` subscribed; `uninstall()` takes it all back."""

    RE: RunEngine
    table: RunTable
    plot: LiveIVPlot | None
    progress: ProgressBarManager
    previous_hook: Callable[..., Any] | None
    tokens: list[int] = field(default_factory=list)
    status_line: StatusLine | None = None

    def uninstall(self) -> None:
        for token in self.tokens:
            self.RE.unsubscribe(token)  # type: ignore[no-untyped-call]
        self.tokens.clear()
        if self.status_line in progress.listeners:
            progress.listeners.remove(self.status_line)
        if self.RE.waiting_hook is self.progress:
            self.RE.waiting_hook = self.previous_hook


def install_display(
    RE: RunEngine,
    *,
    plots: bool,
    stream: TextIO | None = None,
    figure_factory: FigureFactory | None = None,
) -> Display:
    """Subscribe the live table (and the IV plot when `plots`) and set the progress bars.

    The plot's figures come from `figure_factory`, by default the pyplot window `IV_WINDOW`
    (pyplot is imported only here, and only when `plots` is true).
    """
    table = RunTable(stream)
    plot = None
    if plots:
        plot = (
            LiveIVPlot(pyplot_figure, use_teleporter=None)
            if figure_factory is None
            else LiveIVPlot(figure_factory)
        )
    bars = progress_bars(stream)
    display = Display(RE, table, plot, bars, RE.waiting_hook)
    if (sys.stdout if stream is None else stream).isatty():  # point, voltage, countdown
        display.status_line = StatusLine(stream)
        progress.listeners.append(display.status_line)
    display.tokens.append(RE.subscribe(table))  # type: ignore[no-untyped-call]
    if plot is not None:
        display.tokens.append(RE.subscribe(plot))  # type: ignore[no-untyped-call]
    RE.waiting_hook = bars  # type: ignore[assignment]  # untyped upstream (None)
    return display


__all__ = [
    "Display",
    "IVSlot",
    "LiveIVPlot",
    "NothingToSave",
    "RunTable",
    "bare_figure",
    "hinted_fields",
    "install_display",
    "iv_run",
    "progress_bars",
    "pyplot_figure",
]
