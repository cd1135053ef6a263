"""`teststand report` over a real Tiled server, with runs stored by the live writer.

Two IV stages of two modules go through a RunEngine into Tiled (the live writer), analysed live
by `IVAnalysis`; the INITIAL_WARM results are stored as run metadata, the INITIAL_COLD ones are
left for the report to recompute. Module B's leakage current grows 2.5-fold from warm to cold.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, replace
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from iv_runs import CONTAINER, STEP, STOP, A, B, C, Stored

from teststand.app.cli import main
from teststand.app.report import (
    IV_PNG,
    STAGE_COLUMNS,
    TEMPERATURE_PNG,
    ModuleReport,
    TemperatureTrace,
    UnknownModule,
    compare,
    judge,
    module_report,
    plot_iv,
    plot_temperature,
    write_all,
    write_report,
)

ROOT = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"


class Tables(HTMLParser):
    """The text of every cell of the rows with an id, and every image and link target."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.rows: dict[str, list[str]] = {}
        self.images: list[str] = []
        self.links: list[str] = []
        self._row: str | None = None
        self._cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "tr" and found.get("id"):
            self._row = str(found["id"])
            self.rows[self._row] = []
        elif tag == "td" and self._row is not None:
            self._cell = []
        elif tag == "img":
            self.images.append(str(found["src"]))
        elif tag == "a":
            self.links.append(str(found["href"]))

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._row is not None and self._cell is not None:
            self.rows[self._row].append("".join(self._cell))
            self._cell = None
        elif tag == "tr":
            self._row = None


def page(path: Path) -> Tables:
    return Tables(path.read_text(encoding="utf-8"))


@dataclass
class Written:
    out: Path
    index: Path
    reports: dict[str, ModuleReport]


@pytest.fixture(scope="module")
def written(stored: Stored, tmp_path_factory: pytest.TempPathFactory) -> Written:
    """`write_all`: every module's report and the index (each module read from Tiled once)."""
    out = tmp_path_factory.mktemp("reports")
    reports, index = write_all(stored.catalog, out)
    return Written(out, index, {r.module_id: r for r in reports})


def test_catalog_finds_a_module_by_its_list_exactly(stored: Stored) -> None:
    found = [s.uid for s in stored.catalog.search(module_id=A)]
    names = ["warm", "aborted", "cold", "temperature"]
    assert found == [stored.uids[name] for name in names]  # not C's run
    assert [s.uid for s in stored.catalog.search(module_id=C)] == [stored.uids["c"]]
    assert stored.catalog.search(module_id=B, test="iv")[1].module_ids == (B, A)
    assert stored.catalog.newest(B, "iv").metadata["start"]["uid"] == stored.uids["cold"]
    assert stored.catalog.module_ids() == sorted([A, B, C])


def test_module_page_links_its_pngs(written: Written) -> None:
    index = written.out / A / "index.html"
    assert page(index).images == [IV_PNG, TEMPERATURE_PNG]
    for image in page(index).images:
        assert (index.parent / image).read_bytes().startswith(PNG)


def test_table_shows_each_stage_result(stored: Stored, written: Written) -> None:
    rows = page(written.out / B / "index.html").rows
    for stage, run in (("INITIAL_WARM", "warm"), ("INITIAL_COLD", "cold")):
        uid = stored.uids[run]
        slot = "2" if run == "warm" else "1"
        expected = stored.live[uid]["analysis"]["slots"][slot]
        row = rows[f"stage-{stage}"]
        assert row[0] == stage and row[2] == uid
        assert float(row[5]) == pytest.approx(expected["leakage_current"] * 1e6, rel=1e-3)
        assert float(row[6]) == pytest.approx(expected["leakage_current_density"] * 1e6, rel=1e-3)
        assert float(row[7]) == pytest.approx(expected["temperature"], abs=0.05)
        assert row[8] == expected["verdict"] == "pass"
    # B stopped at its 150 V max_bias when warm: no breakdown found up to there
    assert rows["stage-INITIAL_WARM"][3] == "≥ 150 (none found)"
    assert "×2.50" in rows["stage-INITIAL_COLD"][9]
    cold = stored.live[stored.uids["cold"]]["analysis"]["slots"]["1"]
    assert cold["leakage_current"] == pytest.approx(5e-6, rel=0.01)  # normalised back to 20 degC


def test_curves_hold_only_measuring_points_of_completed_runs(
    stored: Stored, written: Written
) -> None:
    warm, cold = written.reports[B].stages
    assert warm.uid == stored.uids["warm"] and cold.uid == stored.uids["cold"]
    assert warm.voltages == tuple(v * STEP for v in range(int(150 / STEP) + 1))
    assert len(cold.voltages) == int(STOP / STEP) + 1 and all(i > 0 for i in cold.currents)
    a_warm, _ = written.reports[A].stages
    assert a_warm.uid == stored.uids["warm"]  # not the newer, interrupted run


def test_missing_analysis_is_analysed_as_the_live_one(stored: Stored, written: Written) -> None:
    warm, cold = written.reports[A].stages
    assert not warm.recomputed and cold.recomputed
    assert cold.result == stored.live[stored.uids["cold"]]["analysis"]["slots"]["2"]
    assert warm.result == stored.live[stored.uids["warm"]]["analysis"]["slots"]["1"]
    notes = page(written.out / A / "index.html").rows["stage-INITIAL_COLD"][10]
    assert "no stored analysis" in notes


def test_verdicts(written: Written) -> None:
    a, b, c = (written.reports[m] for m in (A, B, C))
    assert (a.verdict, a.reasons) == ("pass", ())
    assert b.verdict == "fail"
    (reason,) = b.reasons
    assert reason.startswith("INITIAL_COLD against INITIAL_WARM: leakage current")
    assert "at most ×2 is allowed" in reason
    html = (written.out / B / "index.html").read_text(encoding="utf-8")
    assert "Verdict: FAIL" in html and "×2.50: at most ×2 is allowed" in html
    assert c.verdict == "incomplete" and c.stages == () and c.runs == 1


def test_temperature_history_covers_every_run(stored: Stored, written: Written) -> None:
    traces = written.reports[A].temperatures
    names = ["warm", "aborted", "cold", "temperature"]
    assert [t.uid for t in traces] == [stored.uids[n] for n in names]
    assert [len(t.values) for t in traces] == [stored.events[stored.uids[n]] for n in names]
    assert traces[-1].values == (-25.0, -10.0, 5.0, 20.0) and traces[-1].test == "temperature"
    assert all(t.times == tuple(sorted(t.times)) for t in traces)


def test_stage_limits_treat_no_breakdown_as_at_least_the_highest_point() -> None:
    none_to_200 = {"breakdown_voltage": None, "max_voltage": 200.0, "leakage_current": 1e-6}
    at = [{"breakdown_voltage": v, "max_voltage": v, "leakage_current": 1e-6} for v in (185, 195)]
    assert "by at least 15 V" in compare("W", none_to_200, "C", at[0]).problems[0]
    assert compare("W", none_to_200, "C", at[1]).problems == ()
    assert compare("W", at[0], "C", none_to_200).breakdown_drop is None
    drop = compare("W", {**at[1], "breakdown_voltage": 196}, "C", at[0])
    assert drop.breakdown_drop == 11 and "from 196 V (W) to 185 V" in drop.problems[0]
    doubled = compare("W", at[1], "C", {**at[1], "leakage_current": 2e-6})
    assert doubled.problems == () and doubled.leakage_ratio == 2.0


def test_a_failed_stage_fails_the_module_with_its_reasons(written: Written) -> None:
    warm, cold = written.reports[A].stages
    broken = {**cold.result, "verdict": "fail", "reasons": ["breakdown at 80 V is too low"]}
    report = judge(A, 4, [warm, replace(cold, result=broken)], [], "INITIAL_COLD")
    assert report.verdict == "fail"
    assert report.reasons == (
        f"INITIAL_COLD: the IV analysis failed (run {cold.uid}): breakdown at 80 V is too low",
    )
    unknown = judge(A, 4, [replace(warm, result={"verdict": None})], [], "INITIAL_WARM")
    assert unknown.verdict == "incomplete" and "has no analysis" in unknown.reasons[0]


def test_a_test_run_never_changes_the_module_verdict(written: Written, tmp_path: Path) -> None:
    """A quick 50 V TEST scan fails ("never reached the operating voltage"): shown, not judged."""
    warm, cold = written.reports[A].stages
    quick = replace(
        warm,
        stage="TEST",
        uid="quick-test-run",
        result={"verdict": "fail", "reasons": ["the scan never reached the 100 V operating"]},
    )
    report = judge(A, 5, [quick, warm, cold], [], "INITIAL_COLD")
    assert report.verdict == "pass" and report.reasons == ()
    assert [s.stage for s in report.stages] == ["TEST", "INITIAL_WARM", "INITIAL_COLD"]
    only_test = judge(A, 1, [quick], [], "TEST")
    assert only_test.verdict == "incomplete"
    assert "no completed IV run of a qualification stage" in only_test.reasons[0]
    index = write_report(report, tmp_path)
    notes = page(index).rows["stage-TEST"][10]
    assert notes.startswith("TEST run: shown, not part of the module's verdict")


def test_the_module_page_says_how_where_and_by_whom(stored: Stored, written: Written) -> None:
    """Scan parameters, operator, sensor, software versions; each run links to its data in
    Tiled and the page back to the index."""
    tables = page(written.out / B / "index.html")
    row = tables.rows["stage-INITIAL_WARM"]
    scan, operator, software = (
        row[STAGE_COLUMNS.index(c)] for c in ("Scan", "Operator", "Software")
    )
    assert scan == "0 → 200 V, steps of 5.0 V, settle 0.0 s, compliance 100.0 µA"
    assert operator == "tester" and software == "teststand 0.1.0, bluesky 1.14.6"
    html = (written.out / B / "index.html").read_text(encoding="utf-8")
    assert "Sensor: planar, 15.76 cm²" in html
    assert tables.links[0] == "../index.html"
    warm = f"{stored.server.url}/api/v1/metadata/{CONTAINER}/{stored.uids['warm']}"
    assert warm in tables.links
    assert row[STAGE_COLUMNS.index("Date")].endswith("UTC") and row[1].count(":") == 2


def test_the_plots_mark_breakdown_and_compliance_and_show_dates(
    written: Written, tmp_path: Path
) -> None:
    """Two identical stage curves stay apart (marker, line style, legend); the breakdown point
    and the compliance are drawn; the temperature axis reads as dates."""
    warm, cold = written.reports[A].stages
    twin = replace(cold, result={**cold.result, "breakdown_voltage": 150.0})
    report = replace(
        written.reports[A],
        stages=(replace(warm, voltages=twin.voltages, currents=twin.currents), twin),
    )
    axes = plot_iv(report, tmp_path / IV_PNG).axes[0]
    curves = axes.lines[:1] + [
        line for line in axes.lines if line.get_label().startswith("INITIAL_COLD")
    ]
    assert len({(line.get_marker(), line.get_linestyle()) for line in curves}) == 2
    labels = [text.get_text() for text in axes.get_legend().get_texts()]
    assert any(label.startswith("INITIAL_WARM (") for label in labels)
    assert "breakdown INITIAL_COLD: 150 V" in labels and "compliance 100 µA" in labels
    figure = plot_temperature(written.reports[A], tmp_path / TEMPERATURE_PNG)
    figure.canvas.draw()
    ticks = [tick.get_text() for tick in figure.axes[0].get_xticklabels() if tick.get_text()]
    assert ticks and all(re.match(r"\d{4}-\d\d-\d\d\n\d\d:\d\d:\d\d", t) for t in ticks), ticks


def test_temperature_of_one_instant_has_date_ticks_and_no_warning(
    written: Written, tmp_path: Path
) -> None:
    """A module with a single temperature reading (one instant): matplotlib's date locator
    warned that it found no interval for a zero range; the plot shows a minute around it."""
    import warnings

    one = TemperatureTrace("uid", "iv", "INITIAL_WARM", (1.7e9,), (20.0,))
    report = replace(written.reports[A], temperatures=(one,))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        figure = plot_temperature(report, tmp_path / TEMPERATURE_PNG)
        figure.canvas.draw()
    ticks = [tick.get_text() for tick in figure.axes[0].get_xticklabels() if tick.get_text()]
    assert ticks and all(re.match(r"\d{4}-\d\d-\d\d\n\d\d:\d\d:\d\d", t) for t in ticks), ticks


def test_all_writes_an_index_of_every_module(written: Written) -> None:
    assert list(written.reports) == sorted([A, B, C])
    tables = page(written.index)
    assert tables.rows[f"module-{A}"] == [A, "pass", "4", "INITIAL_COLD"]
    assert tables.rows[f"module-{B}"] == [B, "fail", "2", "INITIAL_COLD"]
    assert tables.rows[f"module-{C}"] == [C, "incomplete", "1", "INITIAL_COLD"]
    assert tables.links == [f"{m}/index.html" for m in sorted([A, B, C])]
    for link in tables.links:
        assert page(written.out / link).images  # every module page exists and shows a plot
    assert not (written.out / C / IV_PNG).exists()


def test_unknown_module_is_a_typed_error(stored: Stored, tmp_path: Path) -> None:
    with pytest.raises(UnknownModule, match=r"'NO-SUCH-MODULE'.*teststand report --all"):
        module_report(stored.catalog, "NO-SUCH-MODULE", tmp_path)
    assert not any(tmp_path.iterdir())


def test_command_line(stored: Stored, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    uri = f"{stored.server.url}/api/v1/metadata/{CONTAINER}"
    where = ["--tiled", uri, "--api-key", stored.server.api_key]
    done = subprocess.run(
        [ROOT / ".venv/bin/teststand", "report", B, *where],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    index = tmp_path / "reports" / B / "index.html"
    assert f"{B}: fail" in done.stdout and str(index) in done.stdout
    assert page(index).images == [IV_PNG, TEMPERATURE_PNG]

    stand = tmp_path / "stand.yaml"  # the stand file's storage: section, reports under data_dir
    storage = {"tiled": uri, "api_key": stored.server.api_key, "data_dir": str(tmp_path / "data")}
    stand.write_text(yaml.safe_dump({"name": "test-stand", "storage": storage}))
    assert main(["report", A, "--stand", str(stand)]) == 0
    assert f"{tmp_path / 'data' / 'reports' / A / 'index.html'}" in capsys.readouterr().out

    assert main(["report", "NO-SUCH-MODULE", *where]) == 1
    assert "error: no run in Tiled names module 'NO-SUCH-MODULE'" in capsys.readouterr().err
    assert main(["report", "--tiled", "http://127.0.0.1:9", "--out", str(tmp_path), A]) == 1
    assert "no Tiled server answers at http://127.0.0.1:9" in capsys.readouterr().err
    assert main(["report", A, "--all", *where]) == 1
    assert "give one MODULE_ID, or --all" in capsys.readouterr().err


@pytest.fixture(autouse=True)
def _no_leaked_figures() -> Iterator[None]:
    """The report never touches pyplot's global figure list."""
    yield
    import sys

    if "matplotlib.pyplot" in sys.modules:
        assert not sys.modules["matplotlib.pyplot"].get_fignums()
