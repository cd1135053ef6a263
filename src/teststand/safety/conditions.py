"""The interlock conditions: from one `Snapshot` and the stand file's `interlocks:` limits, the
reasons to act. Each reason says what was seen, against which limit (by its key path).

"The chiller is stopped while the stand is cold" (reviewed against QUALIFICATION.md): the stand
is cold where the modules are. With a coldbox that is its plates (coldest plate below
`interlocks.cold_below`); only a stand without a coldbox, whose modules sit on the chiller's own
loop, is judged by the bath. Why: the power order (dry air, chiller running, coldbox set point,
LV, HV; shut down in reverse, then warm up) needs the chiller running while the TECs hold the
plates cold, since they dump their heat into its water: a chiller that stops then leaves cold
modules under bias in an uncontrolled thermal state. A cold bath with warm plates is no such
state: the qualification ends with HV and LV off and the chiller in standby, its bath at warm
minus `chiller_offset` (10 °C at a 20 °C target), and a stop at the start of cooling, before the
plates are cold, only lets them warm, away from the dew point. Judging the bath faulted every
normal end of a qualification; the dew point itself is guarded by its own margin, and a hot
bath by `over_temperature`, whatever this rule says."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from teststand.config import InterlockConfig, StandConfig
from teststand.devices.lauda.client import FAULT_FLAGS
from teststand.safety.readings import Snapshot

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Finding:
    """A reason to act; `error` when the state of an instrument is unknown (ERROR, not SAFE).
    A finding on one instrument's reading names that instrument (`source`) and what it is
    (`kind`): it acts once a second reading agrees (`Confirmation`)."""

    reason: str
    error: bool = False
    kind: str = ""
    source: str | None = None


def environment(snapshot: Snapshot, limits: InterlockConfig) -> list[Finding]:
    """Dew point, lid and interlock, dry-air flow, chiller, over-temperature."""
    found: list[Finding] = []
    box = snapshot.box
    if box is not None:
        source = snapshot.sources.get("box")
        dew = snapshot.dew_point
        assert dew is not None
        coldest = min(box.plates)
        if coldest - dew < limits.dew_point_margin:
            found.append(
                Finding(
                    f"dew point margin {coldest - dew:.1f} K is below "
                    f"{limits.dew_point_margin:g} K (interlocks.dew_point_margin): coldest plate "
                    f"{coldest:.1f} °C, dew point {dew:.1f} °C",
                    kind="dew point margin",
                    source=source,
                )
            )
        if not box.lid_closed:
            found.append(Finding("the coldbox lid is open", kind="lid", source=source))
        elif not box.interlock_ok:
            found.append(Finding("the coldbox interlock is tripped", kind="lid", source=source))
        if box.valve and box.flow < limits.min_dry_air_flow:
            found.append(
                Finding(
                    f"dry-air flow lost: {box.flow:.1f} l/min with the valve open "
                    f"(interlocks.min_dry_air_flow {limits.min_dry_air_flow:g} l/min)",
                    kind="dry-air flow",
                    source=source,
                )
            )
        hottest = max(*box.plates, box.air)
        if hottest > limits.over_temperature:
            found.append(_over_temperature("coldbox", hottest, limits, source))
    chiller = snapshot.chiller
    if chiller is not None:
        source = snapshot.sources.get("chiller")
        alarms = chiller.flags & FAULT_FLAGS
        if alarms:
            found.append(
                Finding(f"chiller alarm: {', '.join(sorted(alarms))}", kind="alarm", source=source)
            )
        # The stand is cold where the modules are: the plates (the bath itself runs colder than
        # a warm target, chiller_offset, and is stopped there at the end of a qualification).
        cold = (min(box.plates) if box is not None else chiller.bath) < limits.cold_below
        if not chiller.running and cold:
            found.append(
                Finding(
                    f"the chiller is stopped while the stand is cold (below "
                    f"{limits.cold_below:g} °C, interlocks.cold_below)",
                    kind="chiller stopped",
                    source=source,
                )
            )
        if chiller.bath > limits.over_temperature:
            found.append(_over_temperature("chiller bath", chiller.bath, limits, source))
    return found


def _over_temperature(
    where: str, value: float, limits: InterlockConfig, source: str | None
) -> Finding:
    return Finding(
        f"over-temperature: {where} at {value:.1f} °C, above {limits.over_temperature:g} °C "
        "(interlocks.over_temperature)",
        kind=f"over-temperature {where}",
        source=source,
    )


def links(silent_for: dict[str, float], failures: dict[str, str], limit: float) -> list[Finding]:
    """An instrument silent for longer than `interlocks.link_timeout`: its state is unknown."""
    return [
        Finding(
            f"lost link to {name}: no answer for {age:.1f} s (interlocks.link_timeout "
            f"{limit:g} s){': ' + failures[name] if name in failures else ''}",
            error=True,
        )
        for name, age in sorted(silent_for.items())
        if age > limit
    ]


@dataclass
class Confirmation:
    """An interlock on one instrument's reading acts when two consecutive readings of that
    instrument show it: a single garbled reply that still parses (a bath of 220.00 °C for
    20.00 °C, line noise) must not trip the stand. `judge` splits the findings into those to act
    on and those awaiting the next reading (the watchdog asks for it at once, so a real fault
    costs one more read of that instrument, not a poll period)."""

    first_seen: dict[str, tuple[int, str]] = field(default_factory=dict)
    confirmed: set[str] = field(default_factory=set)

    def judge(
        self, findings: list[Finding], answers: dict[str, int]
    ) -> tuple[list[Finding], list[Finding]]:
        """(act on these, await another reading of these)."""
        act: list[Finding] = []
        pending: list[Finding] = []
        present: set[str] = set()
        for finding in findings:
            if finding.source is None:
                act.append(finding)
                continue
            present.add(finding.kind)
            number = answers.get(finding.source, 0)
            first, _ = self.first_seen.setdefault(finding.kind, (number, finding.reason))
            if number > first or finding.kind in self.confirmed:
                self.confirmed.add(finding.kind)
                act.append(finding)
            else:
                pending.append(finding)
        for kind in set(self.first_seen) - present:
            _, reason = self.first_seen.pop(kind)
            if kind not in self.confirmed:
                log.warning(
                    "not confirmed by the next reading, not acted on (a garbled reply?): %s",
                    reason,
                )
            self.confirmed.discard(kind)
        return act, pending


@dataclass
class ComplianceWatch:
    """Since when each module's HV channel has been over `limits.compliance`."""

    config: StandConfig
    since: dict[tuple[str, int], float] = field(default_factory=dict)

    def check(self, snapshot: Snapshot, trip_time: float) -> list[Finding]:
        compliance = self.config.limits.compliance
        slots = {
            (slot.hv.instrument, slot.hv.channel): number
            for number, slot in self.config.slots.items()
            if slot.module is not None
        }
        found: list[Finding] = []
        for reading in snapshot.hv:
            key = (reading.supply, reading.channel)
            if key not in slots:
                continue
            over = reading.current >= compliance or "OVC" in reading.status.flags
            if not over:
                self.since.pop(key, None)
                continue
            start = self.since.setdefault(key, snapshot.time)
            if snapshot.time - start > trip_time:
                found.append(
                    Finding(
                        f"slot {slots[key]} ({reading.supply}:{reading.channel}) over its "
                        f"compliance ({compliance:g} A, limits.compliance) for "
                        f"{snapshot.time - start:.1f} s (interlocks.compliance_trip_time "
                        f"{trip_time:g} s)"
                    )
                )
        return found


def hv_outside_run(snapshot: Snapshot, limits: InterlockConfig) -> list[Finding]:
    """HV above the safe voltage while the stand is not in RUN."""
    up = [r for r in snapshot.hv if r.voltage >= limits.hv_safe_voltage]
    if not up:
        return []
    where = ", ".join(f"{r.supply}:{r.channel} {r.voltage:.0f} V" for r in up)
    return [Finding(f"HV raised outside RUN: {where}")]


__all__ = ["ComplianceWatch", "Confirmation", "Finding", "environment", "hv_outside_run", "links"]
