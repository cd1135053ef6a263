"""The live display: tables and the IV plot from real runs, progress of real simulated ramps."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.plans as bp
import bluesky.preprocessors as bpp
import pytest
from bluesky import RunEngine
from helpers import run
from ophyd_async.core import (
    SignalRW,
    StandardReadable,
    init_devices,
    soft_signal_rw,
)
from ophyd_async.core import StandardReadableFormat as Format

from teststand.callbacks.display import LiveIVPlot, NothingToSave, install_display
from teststand.callbacks.schema import validate_metadata
from teststand.devices.caen import CaenHV
from teststand.devices.lauda import LaudaChiller
from teststand.sim.runner import RunningSim, start_simulator

MODULES = {"3": "20UPGM22110003", "5": "20UPGM22110005"}
VOLTAGES = [0.0, 5.0, 10.0, 15.0, 20.0, 25.0]
COMPLIANCE = 1e-4


def current(slot: str, volts: float) -> float:
    """Negative currents (as a Keithley reports them); slot 5 hits compliance at 15 V."""
    return -(1e-7 * (1 + volts / 10) if slot == "3" else 2e-5 * (1 + volts / 5))


def state(slot: str, volts: float) -> str:
    if slot == "5" and volts > 15:
        return "compliance"
    return "measuring" if volts < VOLTAGES[-1] else "done"


def iv_metadata() -> dict[str, Any]:
    return validate_metadata(
        stand="test-stand",
        operator="tester",
        test="iv",
        stage="INITIAL_WARM",
        slots={
            slot: {"module_id": module, "sensor": "planar", "area_cm2": 15.76, "max_bias": 250}
            for slot, module in MODULES.items()
        },
        iv={"start": 0, "stop": 25, "step": 5, "settle": 0, "compliance": COMPLIANCE},
        iv_keys={
            slot: {
                "bias": f"slot{slot}-bias",
                "current": f"slot{slot}-leakage_current",
                "temperature": f"slot{slot}-temperature",
                "state": f"iv-slot{slot}_state",
            }
            for slot in MODULES
        },
    ).start_metadata()


@pytest.fixture
def signals(RE: RunEngine) -> dict[str, SignalRW[Any]]:
    made: dict[str, SignalRW[Any]] = {"iv_voltage": soft_signal_rw(float, units="V")}
    for slot in MODULES:
        made[f"slot{slot}-bias"] = soft_signal_rw(float, units="V", precision=1)
        made[f"slot{slot}-leakage_current"] = soft_signal_rw(float, units="A")
        made[f"slot{slot}-temperature"] = soft_signal_rw(float, units="degC")
        made[f"iv-slot{slot}_state"] = soft_signal_rw(str)
    with init_devices():
        for name, signal in made.items():
            signal.set_name(name)
    return made


def iv_plan(signals: dict[str, SignalRW[Any]]) -> Any:
    """Contract-shaped IV events over soft signals (the bias reads 0.3 V off the nominal)."""

    @bpp.run_decorator(md=iv_metadata())
    def inner() -> Any:
        for volts in VOLTAGES:
            values: dict[str, Any] = {"iv_voltage": volts}
            for slot in MODULES:
                values[f"slot{slot}-bias"] = -(volts + 0.3)
                values[f"slot{slot}-leakage_current"] = current(slot, volts)
                values[f"slot{slot}-temperature"] = 21.0
                values[f"iv-slot{slot}_state"] = state(slot, volts)
            yield from bps.mv(*[arg for k, v in values.items() for arg in (signals[k], v)])
            yield from bps.trigger_and_read(list(signals.values()))

    return (yield from inner())


@pytest.fixture(autouse=True)
def debug_callbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Display failures raise in these tests instead of being logged."""
    monkeypatch.setenv("BLUESKY_DEBUG_CALLBACKS", "1")


def test_iv_table_shows_each_slots_current_in_microamps(
    RE: RunEngine, signals: dict[str, SignalRW[Any]]
) -> None:
    out = io.StringIO()
    display = install_display(RE, plots=False, stream=out)
    RE(iv_plan(signals))
    text = out.getvalue()
    assert "IV INITIAL_WARM: 0 to 25 V in 5 V steps, compliance 100 µA" in text
    assert "slot 3: 20UPGM22110003 (planar)" in text
    assert "slot 5: 20UPGM22110005 (planar)" in text
    header = next(line for line in text.splitlines() if "seq_num" in line)
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "seq_num",
        "time",
        "step V",
        "slot3 I µA",
        "slot5 I µA",
    ]
    rows = [line for line in text.splitlines() if line.startswith("|") and "seq_num" not in line]
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    assert [row[2] for row in cells] == [f"{v:.3f}" for v in VOLTAGES]
    for row, volts in zip(cells, VOLTAGES, strict=True):
        assert row[3] == (f"{abs(current('3', volts)) * 1e6:.3f}" if volts < 25 else "")
        assert row[4] == (f"{abs(current('5', volts)) * 1e6:.3f}" if volts <= 15 else "")
    assert cells[1][3] == "0.150" and cells[3][4] == "80.000"
    assert text.count("slot 5 · 20UPGM22110005 stopped: compliance") == 1
    assert "slot 3 · 20UPGM22110003 stopped: done" in text
    display.uninstall()
    RE(iv_plan(signals))
    assert out.getvalue() == text  # nothing subscribed any more
    assert RE.waiting_hook is None


class Probe(StandardReadable):
    def __init__(self, name: str = "") -> None:
        with self.add_children_as_readables(Format.HINTED_SIGNAL):
            self.shown = soft_signal_rw(float, 1.25, precision=2, units="mm")
        with self.add_children_as_readables():
            self.hidden = soft_signal_rw(float, 7.0)
        super().__init__(name=name)


def test_other_runs_show_their_hinted_fields(RE: RunEngine) -> None:
    with init_devices():
        probe = Probe()
    out = io.StringIO()
    install_display(RE, plots=False, stream=out)
    RE(bp.count([probe], 3))
    text = out.getvalue()
    header = next(line for line in text.splitlines() if "seq_num" in line)
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "seq_num",
        "time",
        "probe-shown mm",
    ]
    rows = [line for line in text.splitlines() if line.startswith("|") and "seq_num" not in line]
    assert [row.strip("|").split("|")[2].strip() for row in rows] == ["1.25"] * 3
    assert "hidden" not in text
    assert "generator count" in text


def test_malformed_iv_metadata_falls_back_and_never_stops_the_run(
    RE: RunEngine, signals: dict[str, SignalRW[Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BLUESKY_DEBUG_CALLBACKS")
    out = io.StringIO()
    display = install_display(RE, plots=True, stream=out, figure_factory=_figure)
    plan = bp.count([signals["iv_voltage"]], 2, md={"test": "iv", "iv_keys": {"9": "junk"}})
    assert RE(plan).exit_status == "success"
    assert "iv_voltage" in out.getvalue()  # shown as a plain run
    assert display.plot is not None and display.plot.figure is None
    with pytest.raises(NothingToSave, match="run an IV scan"):
        display.plot.save("never.png")


def _figure() -> Any:
    from matplotlib.figure import Figure

    return Figure()


def test_iv_plot_draws_one_line_per_slot(
    RE: RunEngine, signals: dict[str, SignalRW[Any]], tmp_path: Any
) -> None:
    plot = LiveIVPlot(_figure)
    RE.subscribe(plot)
    RE(iv_plan(signals))
    RE(bp.count([signals["iv_voltage"]], 1))  # not an IV run: the plot keeps the IV run
    RE(iv_plan(signals))  # a second IV run starts afresh on a cleared figure
    assert plot.axes is not None and plot.figure is not None
    assert plot.axes.get_yscale() == "log"
    assert len(plot.figure.axes) == 1
    lines = {line.get_label(): line for line in plot.axes.get_lines()}
    assert set(lines) == {"compliance", "slot 3 · 20UPGM22110003", "slot 5 · 20UPGM22110005"}
    for slot, module in MODULES.items():
        line = lines[f"slot {slot} · {module}"]
        points = [v for v in VOLTAGES if state(slot, v) == "measuring"]
        assert list(line.get_xdata()) == pytest.approx([v + 0.3 for v in points])
        assert list(line.get_ydata()) == pytest.approx([abs(current(slot, v)) for v in points])
    assert list(lines["compliance"].get_ydata()) == [COMPLIANCE, COMPLIANCE]
    saved = plot.save(tmp_path / "iv.png")
    assert saved.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_display_module_never_imports_pyplot_unless_asked() -> None:
    script = (
        "import sys\n"
        "from bluesky import RunEngine\n"
        "from teststand.callbacks.display import LiveIVPlot, install_display\n"
        "RE = RunEngine()\n"
        "install_display(RE, plots=False).uninstall()\n"
        "plot = LiveIVPlot()\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported'\n"
        "plot.figure_factory()\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n"
        "session = install_display(RE, plots=True)\n"  # the IPython session's pyplot window
        "import matplotlib.pyplot as plt\n"
        "window = session.plot.figure_factory()\n"
        "assert window is session.plot.figure_factory(), 'window not reused'\n"
        "plt.close(window)\n"
        "assert session.plot.figure_factory() is not window, 'closed window not reopened'\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
        env={**os.environ, "MPLBACKEND": "Agg"},
    )
    assert done.stdout.strip() == "ok", done.stderr


@pytest.fixture
def caen(RE: RunEngine) -> Iterator[CaenHV]:
    with start_simulator("caen-dt8033") as sim:
        with init_devices():
            hv = CaenHV(f"serial://{sim.address}")
        channel = hv.channels[1]
        run(RE, lambda: channel.rate_up.set(60))
        run(RE, channel.on)
        yield hv
        run(RE, hv.close)


def test_a_caen_ramp_reports_progress_and_draws_progress_bars(RE: RunEngine, caen: CaenHV) -> None:
    out = io.StringIO()
    display = install_display(RE, plots=False, stream=out)
    updates: list[dict[str, Any]] = []

    def ramp() -> Any:  # bps.mv, with a watcher of our own on the ramp's status
        status = yield from bps.abs_set(caen.channels[1], 60.0, group="ramp")
        status.watch(lambda **update: updates.append(update))
        yield from bps.wait(group="ramp")

    RE(ramp())  # 60 V at 60 V/s: about a second, with a readback every 0.25 s
    assert len(updates) >= 3
    assert {(u["target"], u["unit"], u["name"]) for u in updates} == {(60.0, "V", "hv-channels-1")}
    assert {u["initial"] for u in updates} == {updates[0]["initial"]}
    assert updates[0]["initial"] == pytest.approx(0, abs=1)
    currents = [u["current"] for u in updates]
    assert currents[0] == pytest.approx(0, abs=1)
    assert currents[-1] == pytest.approx(60, abs=2)
    assert currents == sorted(currents)
    assert any(5 < c < 55 for c in currents)  # seen on the way, not only at both ends
    elapsed = [u["time_elapsed"] for u in updates]
    assert elapsed == sorted(elapsed)
    bars = out.getvalue()
    # the bar starts where the ramp is when the display attaches (0 V, or a first step on the
    # way: the ramp's own reads reach the watchers too) and ends at the target
    first = re.search(r"hv-channels-1: +(\d+)%", bars)
    assert first is not None and int(first.group(1)) < 50 and "| 60.0/60.0 [" in bars, bars
    assert re.search(r"hv-channels-1: +[1-9][0-9]%", bars), bars  # drawn on the way up
    assert display.progress.pbar is None  # the bar was cleared when the wait ended
    assert abs(run(RE, caen.channels[1].voltage.get_value) - 60) < 2


@pytest.fixture
def sim_lauda() -> Iterator[RunningSim]:
    with start_simulator("lauda", speed=1000) as simulator:
        yield simulator


def test_a_chiller_set_point_reports_progress(RE: RunEngine, sim_lauda: RunningSim) -> None:
    with init_devices():
        chiller = LaudaChiller(f"serial://{sim_lauda.address}", tolerance=0.5, settle=0.2)
    chiller.movable_logic.poll = 0.02
    updates: list[dict[str, Any]] = []

    async def move() -> None:
        await chiller.start()
        status = chiller.set(10.0)
        status.watch(lambda **update: updates.append(update))
        await status

    run(RE, move)
    run(RE, chiller.close)
    assert len(updates) >= 2
    assert {(u["target"], u["unit"], u["name"]) for u in updates} == {(10.0, "degC", "chiller")}
    assert updates[-1]["current"] == pytest.approx(10.0, abs=0.5)
    assert abs(updates[0]["current"] - 10.0) > abs(updates[-1]["current"] - 10.0)
