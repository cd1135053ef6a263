"""The report's PNGs: IV curves per stage and the temperature history."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import ConciseDateFormatter
from matplotlib.figure import Figure

from teststand.app.report.model import ModuleReport


def _figure() -> Figure:
    figure = Figure(figsize=(8, 4.8), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def plot_iv(report: ModuleReport, path: Path) -> None:
    figure = _figure()
    axes = figure.add_subplot()
    for s in report.stages:
        pairs = [(v, i * 1e6) for v, i in zip(s.voltages, s.currents, strict=True) if i > 0]
        axes.plot([v for v, _ in pairs], [i for _, i in pairs], ".-", label=s.stage)
    if any(s.currents and max(s.currents) > 0 for s in report.stages):
        axes.set_yscale("log")
        axes.legend()
    axes.set(xlabel="|bias| (V)", ylabel="|leakage current| (µA)")
    axes.set_title(f"{report.module_id}: IV curves, newest completed run per stage")
    axes.grid(True, which="both", alpha=0.3)
    figure.savefig(path, format="png")


def plot_temperature(report: ModuleReport, path: Path) -> None:
    figure = _figure()
    axes = figure.add_subplot()
    colours: dict[str, str] = {}  # one colour per test: the default cycle's C0..C9
    for trace in report.temperatures:
        new = trace.test not in colours
        colour = colours.setdefault(trace.test, f"C{len(colours) % 10}")
        times = np.round(np.asarray(trace.times) * 1e3).astype("int64").astype("datetime64[ms]")
        axes.plot(times, trace.values, ".-", color=colour, label=trace.test if new else None)
    axes.set(xlabel="time (UTC)", ylabel="module temperature (°C)")
    axes.set_title(f"{report.module_id}: temperature over every run")
    axes.legend(title="test")
    axes.grid(True, alpha=0.3)
    dates = ConciseDateFormatter(axes.xaxis.get_major_locator())  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_formatter(dates)
    figure.savefig(path, format="png")
