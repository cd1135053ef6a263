"""Control of a served stand from the client side: claim, release, and keeping it.

The IOC gives control to one client at a time (`CONTROL:CLAIM`, shown in `CONTROL:OWNER`; see
teststand.app.ioc.control). A restarted IOC, or one that saw this client's connection close,
has no owner: `ControlKeeper` watches `CONTROL:OWNER` and claims control again when it becomes
empty while this client held it. When another client took control over, it does not fight: it
logs a warning naming the new owner once, and this client's writes are refused (saying so)
until it claims control again explicitly (`claim_control`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from typing import Any

from aioca import DBR_CHAR_STR, CANothing, Subscription, camonitor

from teststand.errors import TeststandError
from teststand.stand.ca import ServerUnavailable, put_checked, read_text

log = logging.getLogger("teststand.stand")
RELEASE_TIMEOUT = 2.0
#: s a claim of control may take, and between two claims while the IOC is away.
CLAIM_TIMEOUT = 5.0
CLAIM_RETRY = 1.0


class ControlHeld(TeststandError, PermissionError):
    """Another client holds control of the served stand."""


def identity() -> str:
    """How this client describes itself in `CONTROL:OWNER` (one per process)."""
    command = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
    return f"pid={os.getpid()} host={socket.gethostname()} cmd={command}"


async def claim_control(prefix: str, timeout: float) -> None:
    """Check an IOC serves `prefix`, then claim control (raise `ControlHeld` naming the owner)."""
    owner_pv = f"{prefix}CONTROL:OWNER"
    try:
        await read_text(owner_pv, timeout=timeout)
    except CANothing:
        raise ServerUnavailable(
            f"no IOC answers for {prefix} ({owner_pv} not found within {timeout:g} s): start "
            "`teststand ioc STAND.yaml` or correct server.prefix in the stand file; check "
            "EPICS_CA_ADDR_LIST when the IOC runs on another host"
        ) from None
    try:
        await put_checked(f"{prefix}CONTROL:CLAIM", identity())
    except TeststandError:
        owner = await read_text(owner_pv)
        raise ControlHeld(
            f"the stand {prefix} is controlled by {owner}; close that session, or take control "
            f"over explicitly (caproto-put {prefix}CONTROL:TAKEOVER 'why')"
        ) from None


async def release_control(prefix: str) -> None:
    await put_checked(f"{prefix}CONTROL:RELEASE", identity(), timeout=RELEASE_TIMEOUT)


class ControlKeeper:
    """Claims control of `prefix` again whenever `CONTROL:OWNER` empties while this client held
    it (an IOC restart); warns once when another client holds it. `held` says which."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.me = identity()
        self.held = True  # made right after this client's claim
        self.subscription: Subscription | None = None
        self._claiming: asyncio.Task[None] | None = None

    @classmethod
    def start(cls, prefix: str) -> ControlKeeper:
        keeper = cls(prefix)
        keeper.subscription = camonitor(
            f"{prefix}CONTROL:OWNER", keeper._update, datatype=DBR_CHAR_STR, notify_disconnect=True
        )
        return keeper

    def _update(self, value: Any) -> None:
        if isinstance(value, CANothing):  # the IOC has gone: claim again once it is back
            if self.held and (self._claiming is None or self._claiming.done()):
                self._claiming = asyncio.ensure_future(self._claim_again())
            return
        self._seen(str(value))

    def _seen(self, owner: str) -> None:
        if self.me in owner:
            self.held = True
        elif owner:
            if self.held:
                log.warning(
                    "control of the stand %s was taken over by %s: this session's writes are "
                    "refused until it claims control again (claim_control)",
                    self.prefix,
                    owner,
                )
            self.held = False
        elif self.held and (self._claiming is None or self._claiming.done()):
            self._claiming = asyncio.ensure_future(self._claim_again())

    async def _claim_again(self) -> None:
        """While this client held control and the IOC shows no owner: claim it. Waits for an
        IOC that is away (restarting), reading the owner itself."""
        while self.held:
            try:
                owner = await read_text(f"{self.prefix}CONTROL:OWNER", timeout=CLAIM_TIMEOUT)
                if owner:
                    self._seen(owner)
                    return
                await put_checked(f"{self.prefix}CONTROL:CLAIM", self.me, timeout=CLAIM_TIMEOUT)
            except (TeststandError, CANothing) as exc:
                log.info("control of the stand %s not claimed yet: %s", self.prefix, exc)
                await asyncio.sleep(CLAIM_RETRY)
                continue
            log.warning("control of the stand %s claimed again (the IOC had no owner)", self.prefix)
            self.held = True
            return

    def close(self) -> None:
        """Stop watching (before releasing control)."""
        self.held = False
        if self._claiming is not None:
            self._claiming.cancel()
        if self.subscription is not None:
            self.subscription.close()
            self.subscription = None


__all__ = ["ControlHeld", "ControlKeeper", "claim_control", "identity", "release_control"]
