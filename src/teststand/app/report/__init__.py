"""Per-module reports built from Tiled alone (`teststand report MODULE_ID`, `--all`).

A module's report is a folder `<out>/<module_id>/` with `index.html` (static HTML) and PNGs: the
IV curves of every stage overlaid (the newest completed IV run of each stage), a table of the
stages (breakdown, leakage at the operating voltage, temperature, the run's verdict for the
module, the stage-to-stage limits of QUALIFICATION.md), the module's temperature over every run,
and a verdict. Results come from each IV run's stored `analysis` metadata; a run without it is
analysed again: its stored start document, primary data and stop document are fed to the live
`teststand.callbacks.iv_analysis.IVAnalysis` (the default criteria of QUALIFICATION.md).
"""

from __future__ import annotations

import html
import itertools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import ConciseDateFormatter
from matplotlib.figure import Figure

from teststand.callbacks.iv_analysis import STOP_REASONS, IVAnalysis, IVPoint
from teststand.callbacks.schema import STAGES
from teststand.errors import TeststandError
from teststand.storage.catalog import Catalog

#: QUALIFICATION.md: between stages the leakage current may at most double ...
LEAKAGE_GROWTH = 2.0
#: ... and the breakdown voltage may drop by at most 10 V.
BREAKDOWN_DROP = 10.0
IV_PNG, TEMPERATURE_PNG = "iv.png", "temperature.png"
Verdict = Literal["pass", "fail", "incomplete"]


class ReportError(TeststandError, ValueError):
    """A report that cannot be made as asked."""


class UnknownModule(ReportError):
    """No run in Tiled names this module."""


@dataclass(frozen=True)
class StageResult:
    """One stage of a module: the newest completed IV run of that stage and its analysis."""

    stage: str
    uid: str
    time: float
    slot: str
    result: Mapping[str, Any]  # the per-slot fields of the IV run contract
    recomputed: bool  # True: analysed here, the run had no stored analysis for the module
    voltages: tuple[float, ...]  # |V| of the "measuring" points, scan order
    currents: tuple[float, ...]  # |I| in A

    @property
    def verdict(self) -> str:
        return str(self.result.get("verdict") or "unknown")


@dataclass(frozen=True)
class Comparison:
    """One stage against the previous stage of the flow that has an IV result."""

    stage: str
    previous: str
    leakage_ratio: float | None  # None: a leakage current is unknown
    breakdown_drop: float | None  # the least drop the results prove, V; None: none proven
    problems: tuple[str, ...]


@dataclass(frozen=True)
class TemperatureTrace:
    uid: str
    test: str
    stage: str
    times: tuple[float, ...]  # event times, s since the epoch
    values: tuple[float, ...]  # degC


@dataclass(frozen=True)
class ModuleReport:
    module_id: str
    runs: int
    stages: tuple[StageResult, ...]  # in the flow's order
    comparisons: tuple[Comparison, ...]
    temperatures: tuple[TemperatureTrace, ...]
    verdict: Verdict
    reasons: tuple[str, ...]
    last_stage: str | None


def stage_order(stage: str) -> int:
    """Position in the flow; TEST (outside the flow) and unknown stages come first."""
    return STAGES.index(stage) if stage in STAGES and stage != "TEST" else -1


def _v(volts: float) -> str:
    return f"{round(volts, 2):g} V"


def _ua(amps: float) -> str:
    return f"{amps * 1e6:.3f} µA"


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def compare(
    previous_stage: str,
    previous: Mapping[str, Any],
    stage: str,
    current: Mapping[str, Any],
) -> Comparison:
    """QUALIFICATION.md's stage-to-stage limits between two per-slot IV results.

    A breakdown of None means none was found up to `max_voltage`, i.e. it is at or above it: a
    drop counts only where the results prove it (previous >= its bound, current known).
    """
    problems: list[str] = []
    ratio: float | None = None
    before, now = _number(previous.get("leakage_current")), _number(current.get("leakage_current"))
    if before is not None and now is not None and before > 0:
        ratio = now / before
        if ratio > LEAKAGE_GROWTH:
            problems.append(
                f"leakage current at the operating voltage rose from {_ua(before)} "
                f"({previous_stage}) to {_ua(now)}, ×{ratio:.2f}: at most ×{LEAKAGE_GROWTH:g} "
                "is allowed"
            )
    drop: float | None = None
    old_bd, old_max = _number(previous.get("breakdown_voltage")), previous.get("max_voltage")
    lower = old_bd if old_bd is not None else _number(old_max)
    new_bd = _number(current.get("breakdown_voltage"))
    if lower is not None and new_bd is not None:
        drop = lower - new_bd
        if drop > BREAKDOWN_DROP:
            was = _v(lower) if old_bd is not None else f"≥ {_v(lower)} (none found)"
            by = "" if old_bd is not None else "at least "
            problems.append(
                f"breakdown voltage fell from {was} ({previous_stage}) to {_v(new_bd)}, by "
                f"{by}{_v(drop)}: at most {_v(BREAKDOWN_DROP)} is allowed"
            )
    return Comparison(stage, previous_stage, ratio, drop, tuple(problems))


def _slot_of(start: Mapping[str, Any], module_id: str) -> str | None:
    for slot, info in (start.get("slots") or {}).items():
        if isinstance(info, dict) and info.get("module_id") == module_id:
            return str(slot)
    return None


def _read(run: Any, keys: Iterable[str | None]) -> dict[str, list[Any]]:
    """The columns `keys` (those present) and `time` of the run's primary stream."""
    try:
        stream = run["primary"]
    except KeyError:
        return {}
    present = sorted({key for key in keys if key} & set(stream))
    if not present:
        return {}
    data = stream.read(variables=["time", *present])
    return {key: data[key].values.tolist() for key in ["time", *present]}


def iv_points(data: Mapping[str, Sequence[Any]], keys: Mapping[str, Any]) -> list[IVPoint]:
    """The slot's IV points: "measuring" and finite, until its first stop state."""
    states = data.get(str(keys.get("state")), [])
    bias, current = data.get(str(keys.get("bias")), []), data.get(str(keys.get("current")), [])
    temperatures = data.get(str(keys.get("temperature")))
    points: list[IVPoint] = []
    for row, state in enumerate(states):
        if state in STOP_REASONS:
            break
        v = _number(bias[row]) if row < len(bias) else None
        i = _number(current[row]) if row < len(current) else None
        if state == "measuring" and v is not None and i is not None:
            t = _number(temperatures[row]) if temperatures is not None else None
            points.append(IVPoint(abs(v), abs(i), t))
    return points


def reanalyse(run: Any, data: Mapping[str, Sequence[Any]]) -> dict[str, Any]:
    """The live analysis of a stored IV run: `IVAnalysis` fed its start, primary data and stop.

    `data` holds the run's primary-stream columns (at least every slot's IV keys) and `time`.
    Returns the run's summary (`{"verdict": ..., "analysis": {"slots": ...}}`), {} if none.
    """
    start, stop = dict(run.metadata.get("start", {})), dict(run.metadata.get("stop") or {})
    uid, times = str(start.get("uid", "")), list(data.get("time", []))
    descriptor = f"{uid}-primary"
    columns = {key: list(values) for key, values in data.items() if key != "time"}
    analysis = IVAnalysis()
    analysis("start", start)
    analysis("descriptor", {"uid": descriptor, "run_start": uid, "name": "primary", "time": 0.0})
    page = {
        "descriptor": descriptor,
        "uid": [f"{uid}-{n}" for n in range(len(times))],
        "seq_num": list(range(1, len(times) + 1)),
        "time": times,
        "data": columns,
        "timestamps": {key: times for key in columns},
        "filled": {},
    }
    analysis("event_page", page)
    analysis("stop", stop)
    return analysis.summaries.get(uid, {})


def _analysis(
    run: Any, slot: str, data: Mapping[str, Sequence[Any]]
) -> tuple[dict[str, Any], bool]:
    """The stored analysis of the slot, else the live analysis replayed (True: recomputed)."""
    stored = ((run.metadata.get("analysis") or {}).get("slots") or {}).get(slot)
    if isinstance(stored, Mapping):
        return dict(stored), False
    why = "the run's start document does not follow the run metadata schema"
    try:
        result = (reanalyse(run, data).get("analysis") or {}).get("slots", {}).get(slot)
    except TeststandError as exc:  # e.g. a temperature below absolute zero
        result, why = None, str(exc)
    if isinstance(result, Mapping):
        return dict(result), True
    return {"verdict": None, "reasons": [], "notes": [f"not analysed: {why}"]}, True


def collect(catalog: Catalog, module_id: str) -> ModuleReport:
    """Everything the report of `module_id` shows, read from Tiled."""
    runs = list(catalog.runs(module_id=module_id))
    if not runs:
        raise UnknownModule(
            f"no run in Tiled names module {module_id!r}: check the module id; "
            "`teststand report --all` reports every module that has runs"
        )
    chosen: dict[str, str] = {}  # stage -> uid of its newest completed IV run (runs: oldest first)
    for uid, run in runs:
        start, stop = run.metadata.get("start", {}), run.metadata.get("stop") or {}
        slot = _slot_of(start, module_id)
        completed = start.get("test") == "iv" and stop.get("exit_status") == "success"
        if completed and slot is not None and slot in (start.get("iv_keys") or {}):
            chosen[str(start.get("stage"))] = uid
    stages: list[StageResult] = []
    temperatures: list[TemperatureTrace] = []
    for uid, run in runs:
        start = run.metadata.get("start", {})
        slot = _slot_of(start, module_id)
        if slot is None:
            continue
        test, stage = str(start.get("test", "?")), str(start.get("stage", "?"))
        temperature = f"slot{slot}-temperature"
        keys: Mapping[str, Any] = {}
        wanted: list[str | None] = [temperature]
        if chosen.get(stage) == uid:
            keys = start["iv_keys"][slot]
            wanted += [key for slot_keys in start["iv_keys"].values() for key in slot_keys.values()]
        data = _read(run, wanted)
        if temperature in data:
            values = [(t, _number(v)) for t, v in zip(data["time"], data[temperature], strict=True)]
            found = [(t, v) for t, v in values if v is not None]
            trace = TemperatureTrace(
                uid, test, stage, tuple(t for t, _ in found), tuple(v for _, v in found)
            )
            temperatures.append(trace)
        if keys:
            points = iv_points(data, keys)
            result, recomputed = _analysis(run, slot, data)
            voltages = tuple(p.voltage for p in points)
            currents = tuple(p.current for p in points)
            time = float(start.get("time", 0.0))
            stages.append(
                StageResult(stage, uid, time, slot, result, recomputed, voltages, currents)
            )
    stages.sort(key=lambda s: (stage_order(s.stage), s.time))
    seen = {
        str(run.metadata["start"]["stage"]) for _, run in runs if run.metadata["start"].get("stage")
    }
    last = max(seen, key=stage_order) if seen else None
    return judge(module_id, len(runs), stages, temperatures, last)


def judge(
    module_id: str,
    runs: int,
    stages: list[StageResult],
    temperatures: list[TemperatureTrace],
    last_stage: str | None,
) -> ModuleReport:
    """The verdict: fail on a failed stage or a stage-to-stage limit, incomplete without IV."""
    flow = [s for s in stages if stage_order(s.stage) >= 0]
    comparisons = [
        compare(before.stage, before.result, now.stage, now.result)
        for before, now in itertools.pairwise(flow)
    ]
    reasons: list[str] = []
    for s in stages:
        if s.verdict == "fail":
            why = "; ".join(str(r) for r in s.result.get("reasons") or []) or "no reason recorded"
            reasons.append(f"{s.stage}: the IV analysis failed (run {s.uid}): {why}")
    for c in comparisons:
        reasons += [f"{c.stage} against {c.previous}: {problem}" for problem in c.problems]
    verdict: Verdict = "fail" if reasons else "pass"
    if not stages:
        verdict, reasons = "incomplete", ["no completed IV run of this module in Tiled"]
    elif not reasons and (unknown := [s for s in stages if s.verdict not in ("pass", "fail")]):
        verdict = "incomplete"
        reasons = [f"{s.stage}: the IV run {s.uid} has no analysis" for s in unknown]
    return ModuleReport(
        module_id,
        runs,
        tuple(stages),
        tuple(comparisons),
        tuple(temperatures),
        verdict,
        tuple(reasons),
        last_stage,
    )


# ---- output ----


def folder_name(module_id: str) -> str:
    """A safe directory name for a module id."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", module_id)
    return name if name.strip(".") else f"_{name}"


def _date(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M UTC")


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


STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #bbb; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #eee; }
.pass { color: #176f2c; } .fail { color: #b00020; } .incomplete { color: #8a5a00; }
.verdict { font-size: 1.4em; font-weight: bold; }
img { max-width: 100%; }
"""


def _page(title: str, body: list[str]) -> str:
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
            *body,
            f"<p><small>Generated {_date(datetime.now(UTC).timestamp())} by "
            "<code>teststand report</code> from the runs in Tiled.</small></p>",
            "</body></html>",
            "",
        ]
    )


def _cell(value: object, css: str = "") -> str:
    attribute = f' class="{css}"' if css else ""
    return f"<td{attribute}>{html.escape(str(value))}</td>"


def _list(items: Iterable[str]) -> str:
    rows = [f"<li>{html.escape(item)}</li>" for item in items]
    return f"<ul>{''.join(rows)}</ul>" if rows else ""


def _fmt(value: Any, scale: float = 1.0, digits: int = 3) -> str:
    number = _number(value)
    return "—" if number is None else f"{number * scale:.{digits}f}"


def breakdown_text(result: Mapping[str, Any]) -> str:
    """The breakdown voltage; "≥ max_voltage" when none was found up to the highest point."""
    breakdown, highest = (
        _number(result.get("breakdown_voltage")),
        _number(result.get("max_voltage")),
    )
    if breakdown is not None:
        return f"{breakdown:g}"
    return f"≥ {highest:g} (none found)" if highest is not None else "—"


def _comparison_text(comparison: Comparison | None) -> tuple[str, str]:
    if comparison is None:
        return "— (first stage)", ""
    if comparison.problems:
        return "; ".join(comparison.problems), "fail"
    ratio = "?" if comparison.leakage_ratio is None else f"×{comparison.leakage_ratio:.2f}"
    drop = "none proven" if comparison.breakdown_drop is None else _v(comparison.breakdown_drop)
    return f"within limits against {comparison.previous}: leakage {ratio}, breakdown drop {drop}", (
        "pass"
    )


STAGE_COLUMNS = (
    "Stage",
    "Date",
    "Run",
    "Breakdown (V)",
    "Operating voltage (V)",
    "Leakage at V_op, 20 °C (µA)",
    "Leakage density (µA/cm²)",
    "Temperature (°C)",
    "Verdict",
    "Against the previous stage",
    "Notes",
)


def _stage_rows(report: ModuleReport) -> list[str]:
    against = {c.stage: c for c in report.comparisons}
    rows = ["<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in STAGE_COLUMNS) + "</tr>"]
    for s in report.stages:
        r = s.result
        text, css = _comparison_text(against.get(s.stage))
        notes = [str(n) for n in [*(r.get("reasons") or []), *(r.get("notes") or [])]]
        if s.recomputed:
            notes.append("no stored analysis: analysed again from the data, default criteria")
        cells = [
            _cell(s.stage),
            _cell(_date(s.time)),
            _cell(s.uid),
            _cell(breakdown_text(r)),
            _cell(_fmt(r.get("operating_voltage"), digits=0)),
            _cell(_fmt(r.get("leakage_current"), 1e6)),
            _cell(_fmt(r.get("leakage_current_density"), 1e6, 4)),
            _cell(_fmt(r.get("temperature"), digits=1)),
            _cell(s.verdict, s.verdict),
            _cell(text, css),
            _cell("; ".join(notes)),
        ]
        rows.append(f'<tr id="stage-{html.escape(s.stage)}">' + "".join(cells) + "</tr>")
    return rows


def module_html(report: ModuleReport, images: Mapping[str, str]) -> str:
    """The module's page; `images` maps the PNG file names written to their captions."""
    body = [
        f"<h1>Module {html.escape(report.module_id)}</h1>",
        f'<p class="verdict {report.verdict}">Verdict: {report.verdict.upper()}</p>',
        _list(report.reasons),
        f"<p>{report.runs} run(s) in Tiled; last stage: "
        f"{html.escape(report.last_stage or '—')}.</p>",
        "<h2>Stages</h2>",
    ]
    if report.stages:
        body += ["<table>", *_stage_rows(report), "</table>"]
    else:
        body.append("<p>No completed IV run.</p>")
    for name, caption in images.items():
        body += [
            f"<h2>{html.escape(caption)}</h2>",
            f'<img src="{html.escape(name)}" alt="{html.escape(caption)}">',
        ]
    return _page(f"Module {report.module_id}", body)


def write_report(report: ModuleReport, out: Path) -> Path:
    """Write `<out>/<module>/index.html` and its PNGs; returns the index.html path."""
    folder = out / folder_name(report.module_id)
    folder.mkdir(parents=True, exist_ok=True)
    images: dict[str, str] = {}
    for name, caption, wanted, plot in (
        (IV_PNG, "IV curves", bool(report.stages), plot_iv),
        (TEMPERATURE_PNG, "Temperature history", bool(report.temperatures), plot_temperature),
    ):
        if wanted:
            plot(report, folder / name)
            images[name] = caption
        else:
            (folder / name).unlink(missing_ok=True)
    index = folder / "index.html"
    index.write_text(module_html(report, images), encoding="utf-8")
    return index


def module_report(catalog: Catalog, module_id: str, out: Path) -> tuple[ModuleReport, Path]:
    """Collect and write one module's report."""
    report = collect(catalog, module_id)
    return report, write_report(report, out)


def index_html(reports: Sequence[ModuleReport]) -> str:
    header = ("Module", "Verdict", "Runs", "Last stage")
    rows = ["<tr>" + "".join(f"<th>{h}</th>" for h in header) + "</tr>"]
    for r in reports:
        link = f"{folder_name(r.module_id)}/index.html"
        rows.append(
            f'<tr id="module-{html.escape(r.module_id)}">'
            f'<td><a href="{html.escape(link)}">{html.escape(r.module_id)}</a></td>'
            + _cell(r.verdict, r.verdict)
            + _cell(r.runs)
            + _cell(r.last_stage or "—")
            + "</tr>"
        )
    counts = {v: sum(r.verdict == v for r in reports) for v in ("pass", "fail", "incomplete")}
    summary = ", ".join(f"{n} {verdict}" for verdict, n in counts.items())
    body = ["<h1>Modules</h1>", f"<p>{len(reports)} module(s): {summary}.</p>"]
    return _page("Modules", [*body, "<table>", *rows, "</table>"])


def write_all(catalog: Catalog, out: Path) -> tuple[list[ModuleReport], Path]:
    """Every module's report, and `<out>/index.html` listing them; returns the index path."""
    reports = [module_report(catalog, module, out)[0] for module in catalog.module_ids()]
    out.mkdir(parents=True, exist_ok=True)
    index = out / "index.html"
    index.write_text(index_html(reports), encoding="utf-8")
    return reports, index
