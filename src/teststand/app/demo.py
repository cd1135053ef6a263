"""`make demo`: qualify the 8 modules of the simulated stand, store the runs, write the reports.

The simulated stand of profile_collection/stand.yaml runs sped up, served by `teststand ioc`
(started and stopped here) and driven over Channel Access (`--direct`: in-process devices); one
module breaks down early (slot 3) and one leaks (slot 6). Plan times (settle, dwell) are scaled
by the speed, so the qualification keeps its simulated proportions. `--quick`: one IV of 2 slots.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import yaml
from aioca import purge_channel_caches
from bluesky import RunEngine
from bluesky.run_engine import call_in_bluesky_event_loop

from teststand.app.ioc.process import IocProcess, local_ca_environment
from teststand.app.report import breakdown_text, write_all
from teststand.app.sessionlog import log_plans, start_session_log
from teststand.callbacks.iv_analysis import IVAnalysis
from teststand.callbacks.tiled_writer import storage_writer
from teststand.config import StandConfig, load_stand
from teststand.errors import TeststandError
from teststand.plans import iv_scan, module_qualification
from teststand.safety.ca_control import CAControl
from teststand.safety.runengine import Attachment, attach
from teststand.stand import build
from teststand.storage.catalog import Catalog
from teststand.storage.server import API_KEY_FILE
from teststand.storage.session import storage_client

#: Simulated seconds per real second for the demo (the stand file's own speed is for sessions).
DEMO_SPEED = 500.0
#: The PV prefix the demo serves the stand under.
DEMO_PREFIX = "TS1:"
WATCH_ENV = "EPICS_CA_AUTO_ADDR_LIST=NO EPICS_CA_ADDR_LIST=127.0.0.1"


def load_simulated(stand_file: str) -> StandConfig:
    """The stand file, which must describe a simulated stand (`sim: true`)."""
    if not Path(stand_file).exists():
        raise TeststandError(f"stand file {stand_file} not found; pass --stand FILE")
    config = load_stand(stand_file)
    if not config.sim:
        raise TeststandError(
            f"{stand_file} is not a simulated stand (sim: true); the demo only drives simulators"
        )
    return config


def _config(stand_file: str, data_dir: Path | None, speed: float) -> StandConfig:
    config = load_simulated(stand_file)
    data: dict[str, Any] = config.model_dump(by_alias=True, exclude_none=True)
    data["speed"] = speed
    if data_dir is not None:
        data["storage"] = {"data_dir": str(data_dir)}
    return load_stand(data)


def _progress(name: str, doc: dict[str, Any]) -> None:
    if name == "start":
        slots = ",".join(doc.get("slots", {}))
        print(f"  {doc.get('test', '?'):<20} {doc.get('stage', ''):<15} slots {slots}", flush=True)
    elif name == "stop" and doc.get("exit_status") != "success":
        print(f"  ... ended {doc.get('exit_status')}: {doc.get('reason', '')}", flush=True)


@contextmanager
def served(config: StandConfig, prefix: str) -> Iterator[StandConfig]:
    """Serve the simulated stand with `teststand ioc` (on loopback) while the block runs; yield
    the stand file a RunEngine uses to drive it over Channel Access."""
    os.environ.update(local_ca_environment())
    data: dict[str, Any] = config.model_dump(mode="json", by_alias=True, exclude_none=True)
    config.storage.data_path.mkdir(parents=True, exist_ok=True)
    stand_file = config.storage.data_path / "served-stand.yaml"
    stand_file.write_text(yaml.safe_dump(data))
    log = config.storage.data_path / "ioc.log"
    with IocProcess(stand_file, prefix, env=local_ca_environment(server=True), log=log):
        print(f"Served by `teststand ioc` as {prefix}…; watch it from another shell with")
        print(f"  {WATCH_ENV} caproto-monitor {prefix}SLOT3:BIAS {prefix}HV:CH2:STATUS")
        yield load_stand({**data, "server": {"prefix": prefix, "connect_timeout": 60.0}})


def run_demo(
    stand_file: str,
    *,
    quick: bool = False,
    data_dir: Path | None = None,
    speed: float = DEMO_SPEED,
    prefix: str | None = DEMO_PREFIX,
) -> int:
    """Qualify (or, `quick`, scan) the simulated stand, over CA to an IOC unless `prefix` is
    None."""
    started = time.monotonic()
    config = _config(stand_file, data_dir, speed)
    with ExitStack() as stack:
        stand_config = config if prefix is None else stack.enter_context(served(config, prefix))
        return _run(config, stand_config, quick=quick, speed=speed, started=started)


def _run(
    config: StandConfig, stand_config: StandConfig, *, quick: bool, speed: float, started: float
) -> int:
    scale = 1.0 / speed  # one simulated second in real seconds
    RE = RunEngine(call_returns_result=True)
    start_session_log(config.storage.data_path, "demo")
    log_plans(RE)
    print(f"Simulated stand {config.name!r} at {speed:g}x; runs go to {config.storage.data_path}")
    writer = storage_writer(config.storage)
    analysis = IVAnalysis(publish=writer.annotate, itk=config.itk)
    RE.subscribe(writer)
    RE.subscribe(analysis)
    RE.subscribe(_progress)
    stand = build(stand_config)
    safety = attach_safety(RE, stand_config)
    try:
        if quick:
            RE(
                iv_scan(
                    stand, [1, 3], 0, 150, 10, settle=scale, stage="INITIAL_WARM", operator="demo"
                )
            )
        else:
            RE(
                module_qualification(
                    stand,
                    None,
                    "INITIAL_WARM",
                    cold=-20.0,
                    cycles=2,
                    dwell=300 * scale,
                    settle=scale,
                    temperature_settle=60 * scale,
                    interval=60 * scale,
                    operator="demo",
                )
            )
    finally:
        if safety is not None:
            safety.detach()
            safety.control.close()  # type: ignore[attr-defined]  # a CAControl
        call_in_bluesky_event_loop(stand.close())
        if stand_config.server is not None:  # before the IOC stops: libca warned of each circuit
            call_in_bluesky_event_loop(_close_ca_channels())
    try:
        if not writer.wait(120):
            print("Tiled is slow: some runs are still in the journal; `teststand storage replay`")
        print_results(config, analysis, time.monotonic() - started)
    finally:
        writer.close()
    return 0


async def _close_ca_channels() -> None:
    """Close this process's CA channels (aioca keeps them after the stand closes)."""
    purge_channel_caches()


def attach_safety(RE: RunEngine, config: StandConfig) -> Attachment | None:
    """Over CA, the plans move the IOC's state machine (READY, RUN) as they run."""
    if config.server is None:
        return None
    control = call_in_bluesky_event_loop(CAControl.connect(config.server.prefix, "demo"))
    return attach(RE, control)


def print_results(config: StandConfig, analysis: IVAnalysis, seconds: float) -> None:
    """Write every module's report from Tiled and print the summary table."""
    out = config.storage.data_path / "reports"
    with storage_client(config.storage) as client:
        reports, index = write_all(Catalog(client), out)
    by_module = {report.module_id: report for report in reports}
    print(f"\n{'slot':>4}  {'module':<16} {'stage':<13} {'V_bd':>18} {'I_leak(20C)':>12}  verdict")
    for number, slot in sorted(config.slots.items()):
        if slot.module is None:
            continue
        report = by_module.get(slot.module.id)
        if report is None or not report.stages:
            continue
        last = report.stages[-1]
        print(
            f"{number:>4}  {slot.module.id:<16} {last.stage:<13} {breakdown_text(last.result):>18} "
            f"{_microamps(last.result.get('leakage_current')):>12}  {report.verdict}"
        )
        for reason in report.reasons:
            print(f"{'':>6}- {reason}")
    data = config.storage.data_path
    print(f"\nDone in {seconds:.0f} s. Reports: {index}")
    key = data / API_KEY_FILE
    print(f"Browse the runs: teststand tiled serve --data {data} --api-key $(cat {key})")


def _microamps(amps: Any) -> str:
    return "—" if amps is None else f"{float(amps) * 1e6:.2f} µA"
