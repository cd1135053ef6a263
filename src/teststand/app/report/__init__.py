"""Per-module reports built from Tiled alone (`teststand report MODULE_ID`, `--all`).

A module's report is a folder `<out>/<module_id>/` with `index.html` (static HTML) and PNGs: the
IV curves of every stage overlaid (the newest completed IV run of each stage), a table of the
stages (breakdown, leakage at the operating voltage, temperature, the run's verdict for the
module, the stage-to-stage limits of QUALIFICATION.md), the module's temperature over every run,
and a verdict. Results come from each IV run's stored `analysis` metadata; a run without it is
analysed again: its stored start document, primary data and stop document are fed to the live
`teststand.callbacks.iv_analysis.IVAnalysis` (the default criteria of QUALIFICATION.md).

Modules: `model` (results, limits, verdict), `collect` (from Tiled), `plots`, `render` (jinja2
templates in templates/, autoescaped).
"""

from teststand.app.report.collect import collect, iv_points, reanalyse
from teststand.app.report.model import (
    BREAKDOWN_DROP,
    LEAKAGE_GROWTH,
    Comparison,
    ModuleReport,
    ReportError,
    StageResult,
    TemperatureTrace,
    UnknownModule,
    Verdict,
    compare,
    judge,
    stage_order,
)
from teststand.app.report.plots import plot_iv, plot_temperature
from teststand.app.report.render import (
    IV_PNG,
    STAGE_COLUMNS,
    TEMPERATURE_PNG,
    breakdown_text,
    folder_name,
    index_html,
    module_html,
    module_report,
    write_all,
    write_report,
)

__all__ = [
    "BREAKDOWN_DROP",
    "IV_PNG",
    "LEAKAGE_GROWTH",
    "STAGE_COLUMNS",
    "TEMPERATURE_PNG",
    "Comparison",
    "ModuleReport",
    "ReportError",
    "StageResult",
    "TemperatureTrace",
    "UnknownModule",
    "Verdict",
    "breakdown_text",
    "collect",
    "compare",
    "folder_name",
    "index_html",
    "iv_points",
    "judge",
    "module_html",
    "module_report",
    "plot_iv",
    "plot_temperature",
    "reanalyse",
    "stage_order",
    "write_all",
    "write_report",
]
