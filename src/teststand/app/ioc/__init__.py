"""The stand as an EPICS IOC: `teststand ioc STAND.yaml [--prefix TS1:]` (see README.md here).

`serve()` opens every instrument of the stand file (simulators first with `sim: true`), builds
the stand's ophyd-async devices, serves every signal as a PV (`StandIOC`) and polls each
instrument in its own loop. Modules that add PVs or tasks (safety) pass `hooks`: each is called
with the `StandIOC` after its PVs are built and before it serves (see `StandIOC.add_pvs`).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from teststand.app.ioc.checks import PutRefused
from teststand.app.ioc.control import ControlRefused
from teststand.app.ioc.server import PVInfo, StandIOC
from teststand.config import PV_PREFIX_PATTERN, StandConfig, load_stand
from teststand.errors import TeststandError
from teststand.roles import HV_SUPPLY
from teststand.stand import TestStand, open_stand

log = logging.getLogger("teststand.ioc")
Hook = Callable[[StandIOC], None]
DEFAULT_PREFIX = "TS1:"


class PrefixInUse(TeststandError, RuntimeError):
    """Another IOC already serves the prefix on the network."""


def prefix_of(config: StandConfig, prefix: str | None) -> str:
    """The prefix to serve: the one given, else the stand file's `server.prefix`, else TS1:."""
    if prefix is not None:
        return prefix
    return config.server.prefix if config.server is not None else DEFAULT_PREFIX


def _served_elsewhere(prefix: str, timeout: float) -> bool:
    from caproto import CaprotoTimeoutError
    from caproto.sync.client import read

    try:
        read(f"{prefix}CONTROL:OWNER", timeout=timeout, repeater=False)
    except (CaprotoTimeoutError, TimeoutError):
        return False
    return True


async def check_prefix_free(prefix: str, timeout: float = 1.0) -> None:
    """Raise `PrefixInUse` when an IOC on the network already answers for `prefix`."""
    if await asyncio.to_thread(_served_elsewhere, prefix, timeout):
        raise PrefixInUse(
            f"{prefix} is already served on the network ({prefix}CONTROL:OWNER answers); stop "
            "that IOC or choose another prefix (--prefix, server.prefix in the stand file)"
        )


async def open_ioc(
    source: str | Path | dict[str, Any] | StandConfig,
    prefix: str | None = None,
    *,
    poll_period: float = 0.2,
    hooks: Sequence[Hook] = (),
    check_prefix: bool = True,
) -> StandIOC:
    """Validate the stand file, check the prefix is free, open the instruments, build the PVs."""
    config = source if isinstance(source, StandConfig) else load_stand(source)
    chosen = prefix_of(config, prefix)
    if not re.fullmatch(PV_PREFIX_PATTERN, chosen):
        raise TeststandError(
            f"PV prefix {chosen!r} is not valid: upper-case words joined by ':', ending in ':' "
            "(for example TS1:)"
        )
    if check_prefix:
        await check_prefix_free(chosen)
    stand = await open_stand(config.model_copy(update={"server": None}))
    try:
        ioc = StandIOC(stand, chosen, poll_period=poll_period)
        await ioc.setup()
        for hook in hooks:
            hook(ioc)
    except BaseException:
        await stand.close()
        raise
    return ioc


async def zero_all_hv(stand: TestStand) -> None:
    """Write VSET 0 to every HV channel (the supplies ramp down): the IOC's safe state on exit."""
    channels = [c for supply in stand.role(HV_SUPPLY).values() for c in supply.channels.values()]
    results = await asyncio.gather(*(c.zero() for c in channels), return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        log.error(
            "HV to 0 V on exit: %d writes failed (%s); check the supply", len(failed), failed[0]
        )


async def serve(ioc: StandIOC, interfaces: Sequence[str]) -> None:
    """Serve until cancelled; then HV to 0 V and the instruments released."""
    try:
        await ioc.run(interfaces)
    finally:
        try:
            await asyncio.shield(zero_all_hv(ioc.stand))
        finally:
            await asyncio.shield(ioc.stand.close())


__all__ = [
    "ControlRefused",
    "PVInfo",
    "PrefixInUse",
    "PutRefused",
    "StandIOC",
    "check_prefix_free",
    "open_ioc",
    "prefix_of",
    "serve",
]
