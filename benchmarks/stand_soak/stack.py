"""The whole stand as separate processes, each startable, killable and restartable.

The simulators (`teststand sim serve-stand --tcp`, whose stdin takes fault lines), a CA
repeater, the IOC with its watchdog (`teststand ioc`), a real InfluxDB (tests/influx.py), the
monitor (`teststand monitor`) and the queue server (`teststand.app.qserver.start`: Redis, the RE
Manager and its worker, which starts the embedded Tiled server of the stand's `storage:`).
Channel Access is loopback only, on ports reserved for it (`ca_environment`, before any CA client).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import yaml
from influx import PASSWORD, USER, Influxd

from teststand.app.ioc.process import SimulatorProcess, terminate

REPO = Path(__file__).resolve().parents[2]
PROFILE = REPO / "profile_collection"
BIN = Path(sys.executable).parent
PREFIX = "SOAK:"
DB = "soak"
#: The IOC polls at 5 Hz (20 s of stand time at speed 100): lighter on a loaded machine.
IOC_OPTIONS = ("--interfaces", "127.0.0.1", "--poll", "0.2")
#: Interlock timings for the loaded 2-core development machine (load average 5-40): the
#: stand's default 10 s link timeout, and 15 s for the heartbeat (at 8 s the queue worker's
#: heartbeat went missing for 8.1 s twice in four short soaks: a false SAFE).
INTERLOCKS = {"heartbeat_timeout": 15.0, "link_timeout": 10.0, "chiller_timeout": 3600.0}


def stand_files(directory: Path, speed: float, urls: dict[str, str] | None, influx: str) -> Path:
    """The profile's stand at `speed`: the simulators' file (no `urls`), else the served one
    (IOC, monitor and worker read the same file; the IOC ignores `server:`)."""
    data: dict[str, Any] = yaml.safe_load((PROFILE / "stand.yaml").read_text())
    data["speed"] = speed
    data["interlocks"] = {**data["interlocks"], **INTERLOCKS}
    data["storage"] = {"data_dir": str(directory / "data"), "replay_interval": 5.0}
    if urls is None:
        path = directory / "sims.yaml"
    else:
        data["sim"] = False
        for name, url in urls.items():
            data["instruments"][name]["url"] = url
        data["server"] = {"prefix": PREFIX, "connect_timeout": 60.0}
        data["monitoring"] = {
            "database": {"url": influx, "db": DB, "user": USER, "password": PASSWORD},
            "journal_dir": str(directory / "monitor-journal"),
            "flush_period": 0.5,
            "stats_period": 10.0,
            "default": {"deadband": 0.0, "max_period": 30.0},
        }
        path = directory / "stand.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _started(command: list[str], log: Path, first_line: str = "") -> subprocess.Popen[str]:
    with log.open("a") as errors:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True)
    if first_line:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith(first_line):
            process.kill()
            raise RuntimeError(f"{command[:3]} did not start: {log.read_text()[-3000:]}")
    return process


@dataclass
class Stack:
    """Every process of the stand; `pids()` names them by role for the samplers."""

    directory: Path
    speed: float

    def start(self) -> None:
        d = self.directory
        self.repeater = _started([str(BIN / "caproto-repeater"), "-q"], d / "repeater.log")
        self.sims = SimulatorProcess(stand_files(d, self.speed, None, ""), log=d / "sims.log")
        self.influxd = Influxd()
        self.influxd.create(DB)
        self.stand_file = stand_files(d, self.speed, self.sims.urls, self.influxd.url)
        self.ioc = _started(
            [str(BIN / "teststand"), "ioc", str(self.stand_file), "--prefix", PREFIX, *IOC_OPTIONS],
            d / "ioc.log",
            "serving",
        )
        self.monitor = _started(
            [str(BIN / "teststand"), "monitor", str(self.stand_file), "--prefix", PREFIX],
            d / "monitor.log",
        )
        self.start_queue_server()

    def start_queue_server(self) -> None:
        from teststand.app.qserver import QserverOptions, free_port, start

        self.state_dir = self.directory / "qserver"
        options = QserverOptions(
            profile=PROFILE,
            stand=self.stand_file,
            state_dir=self.state_dir,
            redis_prefix="soak",
            control_port=free_port(),
            info_port=free_port(),
            timeout=120.0,
        )
        components = {c.name: c for c in start(options)}
        self.manager_pid = components["manager"].pid
        self.redis_pid = components["redis"].pid

    def operator(self) -> Any:
        from teststand.app.operator import Operator
        from teststand.config import load_stand

        storage = load_stand(self.stand_file).storage
        return Operator.from_state_dir(self.state_dir, storage=storage, timeout=120.0)

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    def _children(self) -> list[psutil.Process]:
        """The watchdog's children by age: the RE Manager first, then the worker (if open)."""
        try:
            children = psutil.Process(self.manager_pid).children()
        except psutil.Error:
            return []
        alive = [
            c for c in children if _running(c) and "resource_tracker" not in " ".join(_cmdline(c))
        ]
        return sorted(alive, key=_created)

    def manager_process_pid(self) -> int | None:
        children = self._children()
        return children[0].pid if children else None

    def worker_pid(self) -> int | None:
        """The RE worker: started by the watchdog after the RE Manager, it runs the profile."""
        children = self._children()
        return children[-1].pid if len(children) > 1 else None

    def tiled_pid(self) -> int | None:
        for child in self._manager_tree():
            if "tiled" in _cmdline(child) and "serve" in _cmdline(child) and _running(child):
                return child.pid
        return None

    def _manager_tree(self) -> list[psutil.Process]:
        try:
            return list(psutil.Process(self.manager_pid).children(recursive=True))
        except psutil.Error:
            return []

    def pids(self) -> dict[str, int | None]:
        """The processes the soak samples, by role (None: not running now)."""
        return {
            "simulators": self.sims.process.pid,
            "ioc": self.ioc.pid,
            "monitor": self.monitor.pid,
            "influxd": self.influxd.process.pid if self.influxd.process.poll() is None else None,
            "redis": self.redis_pid,
            "re_watchdog": self.manager_pid,
            "re_manager": self.manager_process_pid(),
            "re_worker": self.worker_pid(),
            "tiled": self.tiled_pid(),
        }

    def stop_monitor(self) -> None:
        terminate(self.monitor, 30.0)

    def stop(self) -> None:
        """Stop every process started, the last first (also after a start that failed halfway:
        what was not started is skipped)."""
        from teststand.app.qserver import stop

        started = vars(self)
        if "state_dir" in started:
            try:
                stop(self.state_dir, force=True)
            except Exception as exc:  # report, and stop the rest anyway
                print(f"stopping the queue server: {exc}", file=sys.stderr)
        for name in ("monitor", "ioc"):
            if name in started:
                terminate(started[name], 30.0)
        if "influxd" in started:
            self.influxd.close()
        if "sims" in started:
            self.sims.stop()
        if "repeater" in started:
            terminate(self.repeater, 30.0)


def _running(process: psutil.Process) -> bool:
    try:
        return bool(process.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _created(process: psutil.Process) -> float:
    try:
        return float(process.create_time())
    except psutil.Error:
        return float("inf")


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return list(process.cmdline())
    except psutil.Error:
        return []


def wait_for(condition: Any, timeout: float, what: str, period: float = 0.5) -> float:
    """Poll `condition()` until true; seconds it took, or RuntimeError naming `what`."""
    began = time.monotonic()
    while not condition():
        if time.monotonic() - began > timeout:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(period)
    return time.monotonic() - began


def ca_environment() -> None:
    """Loopback CA on ports reserved for this soak (`teststand.app.ioc.process.LoopbackCA`), for
    every process it starts and its own clients."""
    from teststand.app.ioc.process import LoopbackCA

    os.environ.update(LoopbackCA.allocate().environment())
