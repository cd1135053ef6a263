"""The end-of-soak checks: runs in Tiled, points in InfluxDB, HV while SAFE, growth."""

from __future__ import annotations

import bisect
import json
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from stand_soak.observe import ProcessSample
from teststand.storage.runwriter import rows_against_stop

#: A PV timestamp in InfluxDB (ns) and in a CA update (float s) agree within this.
STAMP_NS = 2000


def runs_in_tiled(client: Any, uids: Iterable[str]) -> dict[str, Any]:
    """Each run: in Tiled, with its stop document, each stream's events once as the stop
    document counts them (`rows_against_stop`: an event taken again after a suspension's rewind
    carries its seq_num again, at a later time; one rewound and not taken again, as the trip
    failed the suspended plan, follows the stop's count; both are counted in `events_rewound`)."""
    missing, incomplete, duplicated = [], [], []
    statuses: dict[str, int] = {}
    rewound = 0
    for uid in sorted(set(uids)):
        if uid not in client:
            missing.append(uid)
            continue
        run = client[uid]
        stop = run.metadata.get("stop")
        if not stop:
            incomplete.append(uid)
            continue
        status = str(stop.get("exit_status"))
        statuses[status] = statuses.get(status, 0) + 1
        for stream, count in (stop.get("num_events") or {}).items():
            try:
                table = run[stream].base["internal"].read(columns=["seq_num", "time"])
            except KeyError:
                if count:
                    incomplete.append(f"{uid}:{stream}")
                continue
            rows = list(zip(table["seq_num"], table["time"], strict=True))
            problem = rows_against_stop(rows, count)
            if "twice" in problem:
                duplicated.append(f"{uid}:{stream} {problem}")
            elif problem:
                incomplete.append(f"{uid}:{stream} {problem}")
            else:
                rewound += len(rows) - count
    return {
        "runs": len(set(uids)),
        "runs_exit_status": statuses,
        "runs_missing": missing,
        "runs_incomplete": incomplete,
        "runs_duplicated": duplicated,
        "events_rewound": rewound,
    }


def journals_left(data_dir: Path, monitor_journal: Path) -> dict[str, Any]:
    runs = sorted(p.name for p in data_dir.rglob("*.jsonl*"))
    points = sorted(p.name for p in monitor_journal.rglob("*.lp"))
    return {"run_journals_left": runs, "point_journals_left": points}


def points_in_influx(
    influxd: Any,
    db: str,
    seen: dict[str, list[tuple[float, float]]],
    fields: dict[str, str],
    start: float,
    end: float,
) -> dict[str, Any]:
    """Every change of a watched PV (as the soak saw it over CA, a new value) is one row in
    InfluxDB with that time and value; rows that match no change and do not repeat the value
    before them (the monitor's `max_period` repeats) are duplicates or inventions."""
    lost, extra, checked = 0, 0, 0
    examples: list[str] = []
    for suffix, updates in seen.items():
        measurement, field, where = fields[suffix].split("|")
        q = (
            f'SELECT "{field}" FROM "{measurement}" WHERE {where} AND time >= {int(start * 1e9)} '
            f"AND time <= {int(end * 1e9)}"
        )
        series = influxd.query(q, db)
        rows = [(int(t), v) for t, v in series[0]["values"] if v is not None] if series else []
        stamps = [t for t, _ in rows]
        changes, previous = [], None
        for stamp, value in sorted(updates):
            if value != previous and start <= stamp <= end:
                changes.append((stamp, value))
            previous = value
        matched: set[int] = set()
        for stamp, value in changes:
            checked += 1
            at = bisect.bisect_left(stamps, int(stamp * 1e9) - STAMP_NS)
            if at < len(stamps) and abs(stamps[at] - stamp * 1e9) < STAMP_NS:
                matched.add(at)
                if rows[at][1] != value and len(examples) < 5:
                    examples.append(f"{suffix} at {stamp:.6f}: {rows[at][1]} != {value}")
            else:
                lost += 1
                if len(examples) < 5:
                    examples.append(f"{suffix}: {value} at {stamp:.6f} missing")
        for index, (_, value) in enumerate(rows):
            if index not in matched and (index == 0 or rows[index - 1][1] != value):
                extra += 1
    return {
        "points_checked": checked,
        "points_lost": lost,
        # rows the soak saw no change for: changes its own CA subscription missed (a loaded
        # server coalesces a slow client's updates), not points stored twice (see below)
        "points_unmatched_rows": extra,
        **({"points_examples": examples} if examples else {}),
    }


def points_stored(influxd: Any, db: str, made: int) -> dict[str, Any]:
    """Every point the monitor made (its own count, `points_made` in its status file once it
    stopped) is in InfluxDB once: a point is a series, a field and a time, so one written twice
    (a batch re-sent from the journal) is the same point, and stored == made means each once."""
    stored = 0
    for series in influxd.query("SELECT count(*) FROM /.*/", db):
        if series["name"] in ("teststand_monitor", "events"):
            continue
        stored += sum(int(v) for v in series["values"][0][1:] if v is not None)
    events = influxd.query("SELECT count(title) FROM events WHERE kind != 'run'", db)
    stored += int(events[0]["values"][0][1]) if events else 0
    return {"points_made": made, "points_stored": stored}


def hv_while_safe(
    samples: list[tuple[float, float]],
    transitions: list[tuple[float, str, str]],
    limit: float,
    allowance: float,
) -> dict[str, Any]:
    """HV samples above `limit` taken while the stand was SAFE for longer than `allowance` s
    (the ramp down at RDW, the IOC's poll and the sampler's period)."""
    spans: list[tuple[float, float]] = []
    for index, (t, state, _) in enumerate(transitions):
        if state == "SAFE":
            end = transitions[index + 1][0] if index + 1 < len(transitions) else float("inf")
            spans.append((t, end))
    unsafe, worst, in_safe = 0, 0.0, 0
    down: list[float | None] = []  # per span that began with HV up: s until it read below `limit`
    for begin, end in spans:
        looks = [v for t, v in samples if begin - 1.0 <= t < begin]
        if looks and looks[-1] > limit:  # the last look before the trip (within 1 s) saw HV up
            below = next((t for t, v in samples if begin <= t < end and v <= limit), None)
            down.append(round(below - begin, 2) if below is not None else None)
    for t, volts in samples:
        for begin, end in spans:
            if begin + allowance <= t < end:
                in_safe += 1
                worst = max(worst, volts)
                unsafe += volts > limit
    return {
        "safe_spans": len(spans),
        "hv_down_after_safe_s": down,
        "hv_samples_while_safe": in_safe,
        "hv_max_while_safe_V": round(worst, 2),
        "unsafe_moments": unsafe,
        "safe_allowance_s": allowance,
    }


def _slope_per_hour(points: list[tuple[float, float]]) -> float:
    if len(points) < 3:
        return 0.0
    xs = [t for t, _ in points]
    ys = [v for _, v in points]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mean_x) ** 2 for x in xs)
    if den == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / den * 3600


def growth(
    samples: dict[str, list[ProcessSample]], warmup: float, min_span: float
) -> dict[str, Any]:
    """Per role, over its last process (a killed worker's successor counts from its start),
    after `warmup` s of that process: the RSS slope (MB/h, least squares), descriptors and
    threads at the end against their largest value in the first quarter after the warm-up.
    `judged` is false when less than `min_span` s remained after the warm-up."""
    result: dict[str, Any] = {}
    for role, all_samples in sorted(samples.items()):
        last_pid = all_samples[-1].pid
        mine = [s for s in all_samples if s.pid == last_pid]
        begin = mine[0].t + warmup
        after = [s for s in mine if s.t >= begin]
        span = after[-1].t - after[0].t if len(after) > 1 else 0.0
        quarter = [s for s in after if s.t <= after[0].t + span / 4] if after else []
        tail = [s for s in after if s.t >= after[-1].t - span / 4] if after else []
        entry: dict[str, Any] = {
            "pid_changes": len({s.pid for s in all_samples}) - 1,
            "samples": len(after),
            "span_min": round(span / 60, 1),
            "rss_mb": round(mine[-1].rss_mb, 1),
            "rss_mb_per_h": round(_slope_per_hour([(s.t, s.rss_mb) for s in after]), 2),
            "fds": mine[-1].fds,
            "fds_per_h": round(_slope_per_hour([(s.t, s.fds) for s in after]), 1),
            "fds_growth": (max(s.fds for s in tail) - max(s.fds for s in quarter)) if after else 0,
            "threads": mine[-1].threads,
            "threads_growth": (
                (max(s.threads for s in tail) - max(s.threads for s in quarter)) if after else 0
            ),
            "cpu_fraction": round(
                (mine[-1].cpu_s - mine[0].cpu_s) / max(mine[-1].t - mine[0].t, 1e-9), 3
            ),
            "judged": span >= min_span,
        }
        entry["ok"] = (not entry["judged"]) or (
            entry["rss_mb_per_h"] < 1.0
            and entry["fds_growth"] <= 0
            and entry["threads_growth"] <= 0
        )
        result[role] = entry
    return result


def dump(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, default=str))
