"""The faults of a lab, each with the safe action it must be followed by and how fast.

A `Fault` is injected by `inject(soak)`, lasts `hold` s, is cleared by `clear(soak)`, and its
outcome is one of:
- `trip`: the IOC's state machine goes to one of `states` within `reaction` s of the injection
  (the watchdog acted; HV goes down, see the soak's HV check);
- `ride`: nothing trips from the injection until `reaction` s after the clear (the stand rides
  through: retries, reconnects);
- `service`: `recovered(soak)` becomes true within `reaction` s of the clear (a database or a
  server restarted, its backlog drained).
`schedule()` orders them with a seeded random generator.
"""

from __future__ import annotations

import os
import random
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

INSTRUMENTS = ("hv", "chiller", "coldbox", "smu", "lv1", "lv2")
#: Every reply fault class of the simulators at once (README's fault spec), a few % each.
LINK_FAULTS = "garble=0.03,noise=0.03,truncate=0.03,duplicate=0.03,unsolicited=0.03,split=0.03"
LINK_FAULTS += ",drop=0.01"


@dataclass
class Fault:
    name: str
    outcome: str  # trip | ride | service
    inject: Callable[[Any], None]
    clear: Callable[[Any], None]
    hold: float
    reaction: float
    states: tuple[str, ...] = ()
    recovered: Callable[[Any], bool] | None = None
    needs_run: bool = False  # injected while a plan holds the stand in RUN (if one comes)


@dataclass
class FaultRecord:
    """What happened: the times are time.time(); `start` is the soak's."""

    name: str
    outcome: str
    injected: float
    start: float = 0.0
    cleared: float = 0.0
    window_end: float = float("inf")  # the next fault's injection
    reaction_limit: float = 0.0
    reacted_after: float | None = None
    reaction: str = ""
    ok: bool = False
    notes: list[str] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        return {
            "fault": self.name,
            "expected": self.outcome,
            "at_s": round(self.injected - self.start, 1),
            "reaction_s": None if self.reacted_after is None else round(self.reacted_after, 2),
            "limit_s": self.reaction_limit,
            "what": self.reaction,
            "ok": self.ok,
            **({"notes": self.notes} if self.notes else {}),
        }


def _ask(soak: Any, line: str) -> None:
    reply = soak.stack.sims.ask(line)
    if reply.startswith("?"):
        raise RuntimeError(f"the simulators refused {line!r}: {reply}")


def link_faults(names: tuple[str, ...], seed: int, hold: float) -> Fault:
    """Every reply fault class on the links of `names` for `hold` s: the stand rides through."""
    return Fault(
        f"link faults on {'+'.join(names)}",
        "ride",
        lambda soak: [_ask(soak, f"{n} faults {LINK_FAULTS},seed={seed}") for n in names] and None,
        lambda soak: [_ask(soak, f"{n} faults none") for n in names] and None,
        hold,
        10.0,
    )


def unplugged_cable(hold: float, link_timeout: float) -> Fault:
    """The HV supply's cable pulled (its connection drops, nothing answers) for `hold` s: the
    watchdog declares the link lost after `link_timeout` (ERROR)."""

    def pull(soak: Any) -> None:
        _ask(soak, "hv faults hang")
        _ask(soak, "hv unplug")

    def plug(soak: Any) -> None:
        _ask(soak, "hv faults none")
        _ask(soak, "hv reset")

    return Fault("HV cable unplugged", "trip", pull, plug, hold, link_timeout + 10, ("ERROR",))


def lid_opened(hold: float) -> Fault:
    return Fault(
        "coldbox lid opened",
        "trip",
        lambda soak: _ask(soak, "coldbox call open_lid"),
        lambda soak: _ask(soak, "coldbox call close_lid"),
        hold,
        5.0,
        ("SAFE",),
        needs_run=True,
    )


def humidity_spike(hold: float) -> Fault:
    """A humid spell for `hold` s: the box air's dew point at 30 °C (above every plate), the
    air flowing in as wet: the dew-point interlock; then the dry air flushes it out."""
    return Fault(
        "humidity spike",
        "trip",
        lambda soak: _ask(soak, "coldbox call humid_air 30"),
        lambda soak: _ask(soak, "coldbox call humid_air null"),
        hold,
        5.0,
        ("SAFE",),
        needs_run=True,
    )


def worker_killed(heartbeat_timeout: float) -> Fault:
    """kill -9 of the queue worker during a plan: the IOC sees its client gone (circuit closed,
    or no heartbeat for `heartbeat_timeout`) and makes the stand SAFE."""

    def kill(soak: Any) -> None:
        pid = soak.stack.worker_pid()
        if pid is None:
            raise RuntimeError("no queue worker to kill")
        os.kill(pid, signal.SIGKILL)

    return Fault(
        "queue worker killed (kill -9)",
        "trip",
        kill,
        lambda soak: None,
        0.0,
        heartbeat_timeout + 5.0,
        ("SAFE",),
        needs_run=True,
    )


def tiled_killed(outage: float) -> Fault:
    """The embedded Tiled server killed; the writer restarts it on its next write and the
    journals replay (checked at the end: every run complete, journals empty)."""

    def kill(soak: Any) -> None:
        pid = soak.stack.tiled_pid()
        if pid is None:
            raise RuntimeError("no Tiled server to kill")
        os.kill(pid, signal.SIGKILL)
        soak.killed_tiled = pid

    def answers(soak: Any) -> bool:
        pid = soak.stack.tiled_pid()
        return pid is not None and pid != soak.killed_tiled and soak.tiled_answers()

    return Fault("Tiled killed", "service", kill, lambda soak: None, outage, 90.0, (), answers)


def influx_killed(outage: float) -> Fault:
    """InfluxDB killed for `outage` s, then started again: the monitor journals meanwhile and
    drains its journal once the database is back."""

    def kill(soak: Any) -> None:
        soak.stack.influxd.process.kill()
        soak.stack.influxd.process.wait(30)

    def restart(soak: Any) -> None:
        soak.stack.influxd.start()

    def drained(soak: Any) -> bool:
        return not any((soak.stack.directory / "monitor-journal").glob("*.lp"))

    return Fault("InfluxDB killed", "service", kill, restart, outage, 60.0, (), drained)


def _trips(link_timeout: float, heartbeat: float) -> list[Fault]:
    return [
        unplugged_cable(2 * link_timeout, link_timeout),
        lid_opened(5.0),
        humidity_spike(5.0),
        worker_killed(heartbeat),
    ]


def schedule(seed: int, rounds: int, link_timeout: float, heartbeat: float) -> list[Fault]:
    """`rounds` rounds of every fault, in a seeded random order each round; link faults on one
    instrument at a time (each instrument once per round)."""
    rng = random.Random(seed)
    faults: list[Fault] = []
    for number in range(rounds):
        one_round = [link_faults((name,), seed + number, 20.0) for name in INSTRUMENTS]
        one_round += [*_trips(link_timeout, heartbeat), tiled_killed(5.0), influx_killed(30.0)]
        rng.shuffle(one_round)
        faults += one_round
    return faults


def short_schedule(
    seed: int, link_timeout: float, heartbeat: float
) -> tuple[list[Fault], Fault, list[Fault]]:
    """Every fault once: those that must not trip (while the queue runs), the worker's kill,
    and the trips chained during its recovery (each in a seeded order)."""
    rng = random.Random(seed)
    running = [link_faults(INSTRUMENTS, seed, 8.0), influx_killed(10.0)]
    *chained, killer = _trips(link_timeout, heartbeat)
    for fault in chained:
        fault.needs_run = False  # the environment is closed: the soak raises HV itself
    rng.shuffle(running)
    rng.shuffle(chained)
    # Tiled first: its restart (a minute on a loaded machine) overlaps the next faults
    return [tiled_killed(3.0), *running], killer, chained


def judge(
    fault: Fault,
    record: FaultRecord,
    transitions: list[tuple[float, str, str]],
    recovered_at: float | None,
) -> None:
    """Fill `record` from the state transitions after the injection (and the service check)."""
    record.reaction_limit = fault.reaction
    trips = [(t, s, r) for t, s, r in transitions if s in ("SAFE", "ERROR")]
    if fault.outcome == "trip":
        hit = next(((t, s, r) for t, s, r in trips if s in fault.states), None)
        if hit is not None:
            record.reacted_after = hit[0] - record.injected
            record.reaction = f"{hit[1]}: {hit[2]}"
            record.ok = record.reacted_after <= fault.reaction
        else:
            record.reaction = f"no {'/'.join(fault.states)}"
    elif fault.outcome == "ride":
        window_end = record.cleared + fault.reaction
        inside = [(t, s, r) for t, s, r in trips if t <= window_end]
        record.ok = not inside
        record.reaction = "rode through" if not inside else f"{inside[0][1]}: {inside[0][2]}"
    else:
        if recovered_at is not None:
            record.reacted_after = recovered_at - record.cleared
            record.reaction = "recovered"
            record.ok = record.reacted_after <= fault.reaction
        else:
            record.reaction = "not recovered"
        if trips:
            record.ok = False
            record.notes.append(f"tripped: {trips[0][1]}: {trips[0][2]}")
