"""The stand over Channel Access, for the page: a monitor on every PV of the layout.

Each update becomes `pv:SUFFIX` = `{"v": value, "s": severity}` in the hub (an enum as its
name, a lost PV as `{"v": null, "s": 3}`). `health.ioc` says when the IOC does not answer and
clears when it answers again (CA reconnects by itself). The E-stop is a put to `ESTOP`, which the
IOC accepts from anyone. A reset (`reset`) needs the IOC's control: this process claims it for the
reset when nobody holds it (with the queue's environment open, the worker resets instead: see
`WebState.reset`); nothing else is written over CA (the queue server drives the stand).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

from aioca import DBR_CHAR_STR, DBR_STRING, FORMAT_CTRL, Subscription, camonitor

from teststand.app.web.hub import Hub
from teststand.app.web.layout import Layout
from teststand.safety.ca_control import reset_served
from teststand.stand.ca import put_checked
from teststand.stand.control import claim_control, release_control

log = logging.getLogger("teststand.web")
INVALID = 3
#: The PV whose connection stands for the IOC's (it is served by every `teststand ioc`).
HEALTH_PV = "STATE"


def _value(raw: Any) -> Any:
    enums = getattr(raw, "enums", None)
    if enums:
        index = int(raw)
        return enums[index] if 0 <= index < len(enums) else index
    if isinstance(raw, str):
        return raw
    if isinstance(raw, bool | int):
        return int(raw)
    number = float(raw)
    return number if math.isfinite(number) else None


class StandWatcher:
    """Monitors the layout's PVs under its prefix into the hub."""

    def __init__(self, layout: Layout, hub: Hub) -> None:
        self.layout = layout
        self.hub = hub
        self._subscriptions: list[Subscription] = []
        self._connected: dict[str, bool] = {}
        #: Called with (suffix, value) on every update (the live IV curve listens).
        self.listeners: list[Callable[[str, Any], None]] = []

    def start(self) -> None:
        prefix = self.layout.prefix
        self.hub.set("health.ioc", f"connecting to the IOC ({prefix}) ...")
        groups: dict[int | None, list[str]] = {}
        for suffix in self.layout.pvs:
            if suffix == "STATE":
                datatype: int | None = DBR_STRING
            else:
                datatype = DBR_CHAR_STR if suffix in self.layout.text else None
            groups.setdefault(datatype, []).append(suffix)
        for datatype, suffixes in groups.items():
            self._subscriptions += camonitor(
                [prefix + s for s in suffixes],
                lambda raw, i, suffixes=suffixes: self._update(suffixes[i], raw),
                datatype=datatype,
                format=FORMAT_CTRL,
                notify_disconnect=True,
            )

    def _update(self, suffix: str, raw: Any) -> None:
        key = f"pv:{suffix}"
        if not raw.ok:
            self._connected[suffix] = False
            last = self.hub.values.get(key, {}).get("v")
            self.hub.set(key, {"v": last, "s": INVALID, "lost": True})
        else:
            self._connected[suffix] = True
            value = _value(raw)
            self.hub.set(key, {"v": value, "s": int(getattr(raw, "severity", 0))})
            for listener in self.listeners:
                listener(suffix, value)
        if suffix == HEALTH_PV:
            self._health()

    def _health(self) -> None:
        if self._connected.get(HEALTH_PV):
            self.hub.set("health.ioc", "")
        else:
            self.hub.set(
                "health.ioc",
                f"the IOC ({self.layout.prefix}) does not answer: the values shown are the last "
                "known; is `teststand ioc` running? The page recovers when it answers",
            )

    @property
    def ioc_up(self) -> bool:
        return bool(self._connected.get(HEALTH_PV))

    async def estop(self, who: str) -> None:
        """Press the E-stop (the IOC's watchdog puts the stand in SAFE at once)."""
        log.warning("E-stop pressed on the web page by %s", who)
        await put_checked(self.layout.prefix + "ESTOP", 1, wait=True, timeout=5.0)

    async def reset(self, why: str) -> str:
        """SAFE -> READY with the IOC's control claimed for it (refused, naming the holder, when
        another client holds it), and released after."""
        prefix = self.layout.prefix
        await claim_control(prefix, timeout=5.0)
        try:
            return await reset_served(prefix, why)
        finally:
            await release_control(prefix)

    def close(self) -> None:
        for subscription in self._subscriptions:
            subscription.close()
        self._subscriptions.clear()
