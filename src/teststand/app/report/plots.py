"""The report's PNGs: IV curves per stage and the temperature history.

Each stage's curve has its own colour, marker and line style (identical curves stay visible),
its breakdown point is marked, and the compliance of the scans is drawn; time axes show dates.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, DateFormatter
from matplotlib.figure import Figure

from teststand.app.report.model import ModuleReport, StageResult, finite

MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*")
LINES = ("-", "--", "-.", ":")


def _figure() -> Figure:
    figure = Figure(figsize=(8, 4.8), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _breakdown(stage: StageResult) -> tuple[float, float] | None:
    """(V, µA) of the stage's breakdown on its curve, if one was found."""
    volts = finite(stage.result.get("breakdown_voltage"))
    if volts is None or not stage.voltages:
        return None
    order = np.argsort(stage.voltages)
    voltages, currents = np.asarray(stage.voltages)[order], np.asarray(stage.currents)[order]
    return volts, float(np.interp(volts, voltages, currents)) * 1e6


def plot_iv(report: ModuleReport, path: Path) -> Figure:
    """The IV curves of the stages, breakdown points and compliance marked; returns the figure."""
    figure = _figure()
    axes = figure.add_subplot()
    styles = zip(itertools.cycle(MARKERS), itertools.cycle(LINES), strict=False)
    for n, (s, (marker, line)) in enumerate(zip(report.stages, styles, strict=False)):
        colour = f"C{n % 10}"
        pairs = [(v, i * 1e6) for v, i in zip(s.voltages, s.currents, strict=True) if i > 0]
        when = datetime.fromtimestamp(s.time, UTC).strftime("%Y-%m-%d")
        axes.plot(
            [v for v, _ in pairs],
            [i for _, i in pairs],
            marker=marker,
            linestyle=line,
            color=colour,
            markerfacecolor="none",
            label=f"{s.stage} ({when}, run {s.uid[:8]})",
        )
        if (point := _breakdown(s)) is not None and point[1] > 0:
            axes.plot(
                *point,
                marker="X",
                markersize=13,
                color=colour,
                markeredgecolor="black",
                linestyle="none",
                label=f"breakdown {s.stage}: {point[0]:g} V",
            )
    compliances = sorted(
        {c for s in report.stages if (c := finite((s.start.get("iv") or {}).get("compliance")))}
    )
    for compliance in compliances:
        axes.axhline(
            compliance * 1e6,
            color="red",
            linestyle=(0, (6, 3)),
            linewidth=1,
            label=f"compliance {compliance * 1e6:g} µA",
        )
    if any(s.currents and max(s.currents) > 0 for s in report.stages):
        axes.set_yscale("log")
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize="small")
    axes.set(xlabel="|bias| (V)", ylabel="|leakage current| (µA)")
    axes.set_title(f"{report.module_id}: IV curves, newest completed run per stage")
    axes.grid(True, which="both", alpha=0.3)
    figure.savefig(path, format="png")
    return figure


def plot_temperature(report: ModuleReport, path: Path) -> Figure:
    """The module's temperature over every run, against dates and times; returns the figure."""
    figure = _figure()
    axes = figure.add_subplot()
    colours: dict[str, str] = {}  # one colour per test: the default cycle's C0..C9
    spans: list[np.ndarray] = []
    for trace in report.temperatures:
        new = trace.test not in colours
        colour = colours.setdefault(trace.test, f"C{len(colours) % 10}")
        times = np.round(np.asarray(trace.times) * 1e3).astype("int64").astype("datetime64[ms]")
        axes.plot(times, trace.values, ".-", color=colour, label=trace.test if new else None)
        spans.append(times)
    every = np.concatenate(spans) if spans else np.array([], dtype="datetime64[ms]")
    if every.size and every.max() - every.min() < np.timedelta64(1, "s"):
        # one instant (a single reading): a minute around it, where dates can have ticks
        instant = every.min()
        axes.set_xlim(instant - np.timedelta64(30, "s"), instant + np.timedelta64(30, "s"))
    axes.set(xlabel="date and time (UTC)", ylabel="module temperature (°C)")
    axes.set_title(f"{report.module_id}: temperature over every run")
    axes.legend(title="test")
    axes.grid(True, alpha=0.3)
    axes.xaxis.set_major_locator(AutoDateLocator(maxticks=6))  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_formatter(DateFormatter("%Y-%m-%d\n%H:%M:%S"))  # type: ignore[no-untyped-call]
    figure.savefig(path, format="png")
    return figure
