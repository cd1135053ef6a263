"""The end of a soak: stop queueing, drain the journals, check, and the figures with the goals."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from stand_soak import checks, stack

#: Watched PVs, and where the monitor stores them: measurement|field|WHERE clause.
WATCHED = {
    "SLOT1:BIAS": "slot|bias_V|slot='1'",
    "SLOT5:BIAS": "slot|bias_V|slot='5'",
    "SLOT2:LEAKAGE_CURRENT": "slot|leakage_current_A|slot='2'",
}
#: V above which HV counts as up (the stand's "HV off" is below it).
HV_LIMIT = 2.0
#: s the stand may stay above 2 V after going SAFE: the ramp down at RDW (50 V/s of simulated
#: time), the IOC's poll and the HV sampler's period, on a loaded machine.
RAMP_ALLOWANCE = 3.0


def tiled_url(data_dir: Path) -> str:
    return str(json.loads((data_dir / "server.json").read_text())["url"])


def tiled_answers(data_dir: Path) -> bool:
    import httpx

    try:
        return httpx.get(tiled_url(data_dir) + "/healthz", timeout=2).status_code == 200
    except Exception:
        return False


class Finish:
    def __init__(self, soak: Any, hv: Any, processes: Any) -> None:
        self.soak = soak
        self.hv = hv
        self.processes = processes
        self.problems: list[str] = []

    def _stop_queue(self) -> None:
        """No new items; the running one stopped (aborted after a minute): its run ends."""
        soak = self.soak
        soak.driver.stop()
        operator, recovery = soak.operator, soak.recovery
        try:
            with soak.driver.lock:
                operator.clear()
                if recovery.status().manager_state != "idle":
                    operator.abort(timeout=120)
        except Exception as exc:
            self.problems.append(f"stopping the queue: {exc}")
        recovery.recover()

    def figures(self, start: float, end: float) -> dict[str, Any]:
        soak, o = self.soak, self.soak.options
        self._stop_queue()
        journals = soak.stack.data_dir / "journal"
        monitor_journal = soak.stack.directory / "monitor-journal"
        try:
            stack.wait_for(
                lambda: not any(journals.glob("*.jsonl")) and not any(monitor_journal.glob("*.lp")),
                300,
                "the journals to drain",
            )
        except RuntimeError as exc:
            self.problems.append(str(exc))
        time.sleep(3.0)  # the monitor's last batch
        soak.stack.stop_monitor()  # its last flush and its final count of points
        made = json.loads((monitor_journal / "status.json").read_text())["points_made"]
        for thread in (self.hv, self.processes, soak.poller):
            thread.stop()
        soak.points.stop()
        soak.states.close()
        with soak.driver.lock:
            history = soak.operator.status(history=100_000).history
        uids = {uid for item in history for uid in item.run_uids} | self._run_starts_in_influx()
        from teststand.storage.client import connect
        from teststand.storage.server import stored_api_key

        client = connect(tiled_url(soak.stack.data_dir), stored_api_key(soak.stack.data_dir))
        uids |= set(client)
        warmup = o.warmup if o.warmup is not None else min(600.0, (end - start) / 5)
        outcomes: dict[str, int] = {}
        for item in history:
            key = f"{item.name}:{item.exit_status}"
            outcomes[key] = outcomes.get(key, 0) + 1
        figures: dict[str, Any] = {
            "duration_s": round(end - start, 1),
            "speed": o.speed,
            "seed": o.seed,
            "items": outcomes,
            **checks.runs_in_tiled(client, uids),
            **checks.journals_left(soak.stack.data_dir, monitor_journal),
            **checks.points_in_influx(
                soak.stack.influxd, stack.DB, soak.points.seen, WATCHED, start + 5, end
            ),
            **checks.points_stored(soak.stack.influxd, stack.DB, made),
            **checks.hv_while_safe(
                self.hv.samples, soak.states.transitions, HV_LIMIT, RAMP_ALLOWANCE
            ),
            "faults": [r.figures() for r in soak.records],
            "states": [[round(t - start, 1), state] for t, state, _ in soak.states.transitions],
            "unprovoked_trips": soak.unprovoked,
            "recovery_s": [round(r, 1) for r in soak.recovery.durations],
            "growth": checks.growth(
                self.processes.samples, warmup, min_span=max(300.0, min(900.0, (end - start) / 5))
            ),
            "growth_warmup_s": round(warmup),
            "problems": [
                *self.problems,
                *soak.recovery.problems,
                *self.hv.errors[:5],
                *self.processes.errors[:5],
            ],
            "queue_errors": soak.driver.errors[:10],
        }
        figures["goals"] = goals(figures)
        figures["pass"] = all(figures["goals"].values())
        figures["unprovoked"] = len(soak.unprovoked)
        return figures

    def _run_starts_in_influx(self) -> set[str]:
        series = self.soak.stack.influxd.query(
            "SELECT uid FROM events WHERE kind='run' AND title =~ /^run start/", stack.DB
        )
        return {row[1] for row in series[0]["values"]} if series else set()


def goals(f: dict[str, Any]) -> dict[str, bool]:
    """The issue's goals: nothing lost or duplicated, never unsafe, every fault handled in its
    time, no growth (judged on runs long enough)."""
    return {
        "no_run_lost_or_duplicated": not (
            f["runs_missing"] or f["runs_incomplete"] or f["runs_duplicated"]
        ),
        "journals_empty": not (f["run_journals_left"] or f["point_journals_left"]),
        "no_point_lost_or_duplicated": f["points_lost"] == 0
        and f["points_stored"] == f["points_made"],
        "points_checked": f["points_checked"] > 0,
        "no_unsafe_moment": f["unsafe_moments"] == 0,
        # every trip acted on in time, every service back in time
        "every_fault_handled": all(r["ok"] for r in f["faults"] if r["expected"] != "ride"),
        # availability, not safety: a stand that trips under link faults fails safe
        "rode_through_link_faults": all(r["ok"] for r in f["faults"] if r["expected"] == "ride"),
        "no_growth": all(entry["ok"] for entry in f["growth"].values()),
    }
