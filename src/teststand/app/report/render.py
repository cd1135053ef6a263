"""The report's HTML pages (jinja2 templates in templates/, autoescaped) and its files."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2

from teststand.app.report.collect import collect
from teststand.app.report.model import (
    Comparison,
    ModuleReport,
    StageResult,
    finite,
    stage_order,
    volts_text,
)
from teststand.app.report.plots import plot_iv, plot_temperature
from teststand.storage.catalog import Catalog

IV_PNG, TEMPERATURE_PNG = "iv.png", "temperature.png"
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
    "Official analysis (module-qc-analysis-tools)",
    "Live analysis (QUALIFICATION.md)",
    "Official and live disagree",
    "Scan",
    "Operator",
    "Software",
)

_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("teststand.app.report", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def folder_name(module_id: str) -> str:
    """A safe directory name for a module id."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", module_id)
    return name if name.strip(".") else f"_{name}"


def _date(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _render(template: str, title: str, **context: Any) -> str:
    generated = _date(datetime.now(UTC).timestamp())
    page = _TEMPLATES.get_template(template).render(title=title, generated=generated, **context)
    return page + "\n"


def _fmt(value: Any, scale: float = 1.0, digits: int = 3) -> str:
    number = finite(value)
    return "—" if number is None else f"{number * scale:.{digits}f}"


def breakdown_text(result: Mapping[str, Any]) -> str:
    """The breakdown voltage; "≥ max_voltage" when none was found up to the highest point."""
    breakdown, highest = finite(result.get("breakdown_voltage")), finite(result.get("max_voltage"))
    if breakdown is not None:
        return f"{breakdown:g}"
    return f"≥ {highest:g} (none found)" if highest is not None else "—"


def official_text(result: Mapping[str, Any]) -> tuple[str, str]:
    """The official analysis of a stage: verdict, breakdown, leakage and why it failed."""
    official = result.get("official")
    if not isinstance(official, Mapping):
        return "— (analysed before the official analysis was stored)", ""
    verdict = official.get("verdict")
    reasons = "; ".join(str(r) for r in official.get("reasons") or [])
    if verdict is None:
        return f"no verdict: {reasons}", "incomplete"
    basis = "normalised to 20 °C" if official.get("normalised") else "as measured"
    text = (
        f"{verdict} ({official.get('layer')}): V_bd {breakdown_text(official)}, leakage "
        f"{_fmt(official.get('leakage_current_density'), 1e6, 4)} µA/cm² {basis}"
    )
    return (f"{text}; {reasons}" if reasons else text), str(verdict)


def live_text(result: Mapping[str, Any]) -> tuple[str, str]:
    """The live analysis's verdict of a stage and its reasons."""
    verdict = str(result.get("live_verdict") or result.get("verdict") or "unknown")
    reasons = result.get("live_reasons", result.get("reasons")) or []
    return (f"{verdict}: " + "; ".join(str(r) for r in reasons) if reasons else verdict), verdict


def _comparison_text(comparison: Comparison | None) -> tuple[str, str]:
    if comparison is None:
        return "— (first stage)", ""
    if comparison.problems:
        return "; ".join(comparison.problems), "fail"
    ratio = "?" if comparison.leakage_ratio is None else f"×{comparison.leakage_ratio:.2f}"
    drop = (
        "none proven"
        if comparison.breakdown_drop is None
        else volts_text(comparison.breakdown_drop)
    )
    text = f"within limits against {comparison.previous}: leakage {ratio}, breakdown drop {drop}"
    return text, "pass"


def scan_text(start: Mapping[str, Any]) -> str:
    """The IV scan's parameters from the run's `iv` settings."""
    iv = start.get("iv")
    if not isinstance(iv, Mapping):
        return "—"
    parts = [
        f"{_fmt(iv.get('start'), digits=0)} → {_fmt(iv.get('stop'), digits=0)} V",
        f"steps of {_fmt(iv.get('step'), digits=1)} V",
        f"settle {_fmt(iv.get('settle'), digits=1)} s",
        f"compliance {_fmt(iv.get('compliance'), 1e6, 1)} µA",
    ]
    return ", ".join(parts)


def versions_text(start: Mapping[str, Any]) -> str:
    versions = start.get("versions")
    if not isinstance(versions, Mapping) or not versions:
        return "—"
    return ", ".join(f"{name} {version}" for name, version in versions.items())


def sensor_text(report: ModuleReport) -> str:
    """The module's sensor type and area, from its newest IV run."""
    for stage in reversed(report.stages):
        info = stage.slot_info
        if info.get("sensor"):
            area = finite(info.get("area_cm2"))
            return f"{info['sensor']}" + (f", {area:g} cm²" if area is not None else "")
    return "—"


@dataclass(frozen=True)
class _Row:
    stage: str
    cells: tuple[tuple[str, str], ...]  # (text, css class)
    links: Mapping[int, str]  # cell index -> link target


def _stage_row(s: StageResult, comparison: Comparison | None) -> _Row:
    r = s.result
    text, css = _comparison_text(comparison)
    notes = [str(n) for n in [*(r.get("reasons") or []), *(r.get("notes") or [])]]
    if s.recomputed:
        notes.append("no stored analysis: analysed again from the data, default criteria")
    if stage_order(s.stage) < 0:
        notes.insert(0, f"{s.stage} run: shown, not part of the module's verdict")
    cells = (
        (s.stage, ""),
        (_date(s.time), ""),
        (s.uid, ""),
        (breakdown_text(r), ""),
        (_fmt(r.get("operating_voltage"), digits=0), ""),
        (_fmt(r.get("leakage_current"), 1e6), ""),
        (_fmt(r.get("leakage_current_density"), 1e6, 4), ""),
        (_fmt(r.get("temperature"), digits=1), ""),
        (s.verdict, s.verdict),
        (text, css),
        ("; ".join(notes), ""),
        official_text(r),
        live_text(r),
        ("; ".join(str(d) for d in r.get("disagreement") or []), "disagree"),
        (scan_text(s.start), ""),
        (str(s.start.get("operator") or "—"), ""),
        (versions_text(s.start), ""),
    )
    return _Row(s.stage, cells, {2: s.link} if s.link else {})


def module_html(report: ModuleReport, images: Mapping[str, str]) -> str:
    """The module's page; `images` maps the PNG file names written to their captions."""
    against = {c.stage: c for c in report.comparisons}
    rows = [_stage_row(s, against.get(s.stage)) for s in report.stages]
    disagreements = [
        (s.stage, str(why)) for s in report.stages for why in s.result.get("disagreement") or []
    ]
    return _render(
        "module.html",
        f"Module {report.module_id}",
        report=report,
        rows=rows,
        disagreements=disagreements,
        columns=STAGE_COLUMNS,
        images=images,
        sensor=sensor_text(report),
    )


def index_html(reports: Sequence[ModuleReport]) -> str:
    counts = {v: sum(r.verdict == v for r in reports) for v in ("pass", "fail", "incomplete")}
    summary = ", ".join(f"{n} {verdict}" for verdict, n in counts.items())
    return _render(
        "index.html", "Modules", reports=reports, summary=summary, folder_name=folder_name
    )


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


def write_all(catalog: Catalog, out: Path) -> tuple[list[ModuleReport], Path]:
    """Every module's report, and `<out>/index.html` listing them; returns the index path."""
    reports = [module_report(catalog, module, out)[0] for module in catalog.module_ids()]
    out.mkdir(parents=True, exist_ok=True)
    index = out / "index.html"
    index.write_text(index_html(reports), encoding="utf-8")
    return reports, index
