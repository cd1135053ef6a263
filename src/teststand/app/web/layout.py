"""What the page shows, as PV suffixes taken from the stand file and the IOC's own tree walk.

Every value on the page is an element with `data-pv="SUFFIX"` (and `data-units`): the page's
script writes each pushed value into the elements of its suffix, so the layout lives here and
in the template only.
"""

from __future__ import annotations

from dataclasses import dataclass

from teststand.app.monitor.pvs import watched_pvs
from teststand.config import StandConfig

#: The state machine's and the control's PVs (`teststand ioc`), besides the device signals.
SAFETY_PVS = (
    "STATE",
    "STATE:REASON",
    "STATE:LOG",
    "STATE:MSG",
    "ESTOP",
    "PAUSE:REMAINING",
    "CONTROL:OWNER",
    "MSG",
)
TEXT_PVS = frozenset({"STATE", "STATE:REASON", "STATE:LOG", "STATE:MSG", "CONTROL:OWNER", "MSG"})
SLOT_COLUMNS = (
    ("module", "MODULE_ID", ""),
    ("sensor", "SENSOR_TYPE", ""),
    ("bias set", "BIAS_SETPOINT", "V"),
    ("bias", "BIAS", "V"),
    ("leakage", "LEAKAGE_CURRENT", "A"),
    ("limit", "MAX_BIAS", "V"),
    ("T", "TEMPERATURE", "°C"),
    ("LV", "LV_VOLTAGE", "V"),
    ("LV current", "LV_CURRENT", "A"),
)
ENVIRONMENT = (
    ("chiller", "CHILLER:TEMPERATURE", "°C"),
    ("chiller set point", "CHILLER:SETPOINT", "°C"),
    ("chiller running", "CHILLER:RUNNING", ""),
    ("chiller status", "CHILLER:STATUS", ""),
    ("coldbox", "COLDBOX:TEMPERATURE", "°C"),
    ("coldbox set point", "COLDBOX:SETPOINT", "°C"),
    ("humidity", "COLDBOX:RELATIVE_HUMIDITY", "%"),
    ("dew point", "COLDBOX:DEW_POINT", "°C"),
    ("dew-point margin", "COLDBOX:DEW_POINT_MARGIN", "K"),
)
INTERLOCKS = (
    ("E-stop", "ESTOP", ""),
    ("lid closed", "COLDBOX:LID_CLOSED", ""),
    ("dry-air flow", "COLDBOX:DRY_AIR_FLOW", "l/min"),
    ("dew-point margin", "COLDBOX:DEW_POINT_MARGIN", "K"),
    ("coldbox interlock", "COLDBOX:INTERLOCK_OK", ""),
    ("chiller status", "CHILLER:STATUS", ""),
)


@dataclass(frozen=True)
class SlotRow:
    number: int
    channel_status: str  # the slot's HV channel's STATUS suffix


@dataclass(frozen=True)
class Layout:
    prefix: str
    slots: tuple[SlotRow, ...]
    lv_outputs: tuple[str, ...]  # suffixes of the LV channels (`LV1:CH2`)
    pvs: tuple[str, ...]  # every suffix the page watches
    text: frozenset[str]  # those served as text (char arrays)

    @property
    def slot_columns(self) -> tuple[tuple[str, str, str], ...]:
        return SLOT_COLUMNS

    @property
    def environment(self) -> tuple[tuple[str, str, str], ...]:
        return ENVIRONMENT

    @property
    def interlocks(self) -> tuple[tuple[str, str, str], ...]:
        return INTERLOCKS


def layout(config: StandConfig, prefix: str) -> Layout:
    """The page's layout for the stand (only suffixes the IOC serves, plus the safety PVs)."""
    served = {pv.suffix: pv.text for pv in watched_pvs(config)}
    slots = tuple(
        SlotRow(number, f"{slot.hv.instrument.upper()}:CH{slot.hv.channel}:STATUS")
        for number, slot in sorted(config.slots.items())
    )
    lv_outputs = tuple(
        sorted({s.rsplit(":", 1)[0] for s in served if s.endswith(":MEASURED_VOLTAGE")})
    )
    wanted = {row.channel_status for row in slots}
    wanted |= {f"SLOT{row.number}:{suffix}" for row in slots for _, suffix, _ in SLOT_COLUMNS}
    wanted |= {f"{lv}:{attr}" for lv in lv_outputs for attr in ("MEASURED_VOLTAGE", "OUTPUT")}
    wanted |= {f"{lv}:MEASURED_CURRENT" for lv in lv_outputs}
    wanted |= {suffix for _, suffix, _ in (*ENVIRONMENT, *INTERLOCKS)}
    pvs = tuple(sorted(s for s in wanted if s in served) + list(SAFETY_PVS))
    text = frozenset({s for s in pvs if served.get(s)} | TEXT_PVS)
    return Layout(prefix, slots, lv_outputs, pvs, text)
