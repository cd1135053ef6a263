"""Alarm severity of a served value: faults, compliance and the dew-point margin are MAJOR.

A lost link is not decided here: the poller marks every PV whose read failed INVALID/COMM.
"""

from __future__ import annotations

from typing import Any

from caproto import AlarmSeverity, AlarmStatus

from teststand.config import StandConfig

#: Status flags (CAEN channel status, Lauda flags) that are a fault: a trip, an interlock, an
#: over-current (the channel at its compliance), an alarm of the chiller.
FAULT_FLAGS = frozenset(
    {"TRIP", "KILL", "ILK", "OVT", "OVP", "FAIL", "OVC", "error", "alarm", "over_temperature"}
)
NO_ALARM = (AlarmStatus.NO_ALARM, AlarmSeverity.NO_ALARM)
Alarm = tuple[AlarmStatus, AlarmSeverity]


def alarm_of(attribute: str, value: Any, config: StandConfig) -> Alarm:
    """The alarm of a signal named `attribute` reading `value`."""
    if attribute == "status" and isinstance(value, str) and FAULT_FLAGS & set(value.split("|")):
        return AlarmStatus.STATE, AlarmSeverity.MAJOR_ALARM
    if attribute == "in_compliance" and value is True:
        return AlarmStatus.HIGH, AlarmSeverity.MAJOR_ALARM
    if attribute == "dew_point_margin" and value < config.limits.dew_point_margin:
        return AlarmStatus.LOLO, AlarmSeverity.MAJOR_ALARM
    return NO_ALARM
