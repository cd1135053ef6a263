"""Who controls the stand: one client at a time may write; everyone may read and monitor.

A client claims control by writing a short description of itself (`pid=1234 cmd=…`) to
`PREFIX:CONTROL:CLAIM`. The owner is that client's CA circuit (its host:port): caproto's access
hook (`check_access`) only sees host and user, but every client process has its own circuit, so
two processes of one user on one host are told apart. `CONTROL:OWNER` shows user@host, the
description and the circuit. `CONTROL:TAKEOVER` takes control from whoever holds it (logged);
`CONTROL:RELEASE` gives it back; control is also released when the owner's circuit closes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from teststand.app.ioc.channels import WRITER, Writer
from teststand.errors import TeststandError

log = logging.getLogger("teststand.ioc")


class ControlRefused(TeststandError, PermissionError):
    """A write from a client that does not hold control, or a claim while another holds it."""


@dataclass(frozen=True)
class Owner:
    writer: Writer
    description: str
    since: float

    def __str__(self) -> str:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        who = f"{self.writer.user}@{self.writer.host}"
        return f"{who} {self.description} ({self.writer.address}) since {stamp}"


class Control:
    """The control state; `check()` raises `ControlRefused` unless the writing client owns it."""

    def __init__(self) -> None:
        self.owner: Owner | None = None
        #: Called with the event (`claim`, `takeover`, `release`, `lost`: the owner's circuit
        #: closed) and the owner it concerns, after the change (the safety watchdog listens).
        self.listeners: list[Callable[[str, Owner], None]] = []

    def _tell(self, event: str, owner: Owner) -> None:
        for listener in list(self.listeners):
            try:
                listener(event, owner)
            except Exception:
                log.exception("control listener failed on %s", event)

    def describe(self) -> str:
        return "" if self.owner is None else str(self.owner)

    def _writer(self) -> Writer:
        writer = WRITER.get()
        if writer is None:  # the IOC itself (no CA client): never refused
            return Writer("localhost", "ioc", "local")
        return writer

    def holds(self, writer: Writer) -> bool:
        return self.owner is not None and self.owner.writer.address == writer.address

    def check(self) -> None:
        writer = WRITER.get()
        if writer is None or self.holds(writer):
            return
        if self.owner is None:
            raise ControlRefused(
                f"{writer} does not hold control of the stand; claim it first "
                "(write your description to CONTROL:CLAIM)"
            )
        raise ControlRefused(
            f"{writer} does not hold control: it is held by {self.owner}; ask them to release "
            "it, or take it over (CONTROL:TAKEOVER)"
        )

    def claim(self, description: str) -> str:
        writer = self._writer()
        if self.owner is not None and not self.holds(writer):
            raise ControlRefused(
                f"control of the stand is held by {self.owner}; stop that client, or take "
                "control over explicitly (CONTROL:TAKEOVER)"
            )
        self.owner = Owner(writer, description.strip(), time.time())
        log.info("control claimed by %s", self.owner)
        self._tell("claim", self.owner)
        return description

    def takeover(self, description: str) -> str:
        previous = self.owner
        self.owner = Owner(self._writer(), description.strip(), time.time())
        log.warning("control taken over by %s from %s", self.owner, previous or "nobody")
        self._tell("takeover", self.owner)
        return description

    def release(self) -> None:
        writer = self._writer()
        if self.owner is None:
            return
        if not self.holds(writer) and writer.address != "local":
            raise ControlRefused(f"{writer} cannot release control held by {self.owner}")
        log.info("control released by %s", self.owner)
        owner, self.owner = self.owner, None
        self._tell("release", owner)

    def prune(self, live_addresses: Iterable[str]) -> bool:
        """Release control whose owner's circuit is gone; True when it was released."""
        if self.owner is None or self.owner.writer.address in set(live_addresses):
            return False
        log.warning("control released: its owner %s disconnected", self.owner)
        owner, self.owner = self.owner, None
        self._tell("lost", owner)
        return True
