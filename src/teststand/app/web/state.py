"""`WebOptions` and `WebState`: what `teststand web` serves, and the parts it runs.

It refuses to bind off loopback without accounts (a users file, or the queue server's HTTP
accounts: `httpaccounts`); on loopback without them, every visitor is the local user as an
operator (a stand PC's own screen).
"""

from __future__ import annotations

import asyncio
import getpass
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from teststand.app.web.accounts import Session, Sessions, User, Users
from teststand.app.web.control import ControlLease
from teststand.app.web.errors import BindRefused, WebError
from teststand.app.web.httpaccounts import HttpAccounts
from teststand.app.web.hub import Hub
from teststand.app.web.ivtrace import IVTrace
from teststand.app.web.layout import Layout, layout
from teststand.app.web.live import StandWatcher
from teststand.app.web.queue import QueueWatcher
from teststand.config import StandConfig
from teststand.devices._backend import cancel_and_wait
from teststand.storage.embedded import STATE_FILE
from teststand.storage.server import is_loopback

DEFAULT_BIND = "127.0.0.1:8080"


def parse_bind(bind: str) -> tuple[str, int]:
    host, sep, port = bind.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise WebError(f"--bind {bind!r}: give HOST:PORT, e.g. {DEFAULT_BIND}")
    return host.strip("[]"), int(port)


def check_bind(host: str, users: Path | None, http_accounts: Path | None = None) -> None:
    if users is None and http_accounts is None and not is_loopback(host):
        raise BindRefused(
            f"refusing to serve on {host} without authentication: give --users FILE (create it "
            "with `teststand web --users FILE --add-user NAME --role operator`) or "
            "--http-accounts (the queue server's HTTP accounts), or bind to "
            "127.0.0.1"
        )


@dataclass(frozen=True)
class WebOptions:
    config: StandConfig
    prefix: str
    state_dir: Path
    host: str = "127.0.0.1"
    port: int = 8080
    users: Path | None = None
    http_accounts: Path | None = None
    reports: Path | None = None
    session_hours: float = 12.0
    queue_period: float = 0.5


class WebState:
    """The running page: hub, accounts, control, and the stand's and the queue's watchers."""

    def __init__(self, options: WebOptions) -> None:
        check_bind(options.host, options.users, options.http_accounts)
        self.options = options
        self.users = Users.load(options.users) if options.users else None
        self.http_accounts = (
            HttpAccounts(options.http_accounts, options.state_dir)
            if options.http_accounts
            else None
        )
        self.sessions = Sessions(options.session_hours * 3600.0)
        self.lease = ControlLease()
        self.hub = Hub()
        self.layout: Layout = layout(options.config, options.prefix)
        self.stand = StandWatcher(self.layout, self.hub)
        config = options.config
        self.queue = QueueWatcher(options.state_dir, config.storage, self.hub, options.queue_period)
        self.iv = IVTrace(self.hub, sorted(config.slots))
        self.stand.listeners.append(self.iv.on_value)
        self.queue.listeners.append(self.iv.on_queue)
        self.reports = options.reports or config.storage.data_path / "reports"
        self._tasks: list[asyncio.Task[Any]] = []

    @property
    def authenticated(self) -> bool:
        return self.users is not None or self.http_accounts is not None

    async def login(self, name: str, password: str) -> User:
        """The user of `name` and `password` (`LoginRefused` otherwise)."""
        if self.http_accounts is not None:
            return await self.http_accounts.login(name, password)
        assert self.users is not None, "login without accounts"
        return self.users.login(name, password)

    def local_session(self, host: str) -> Session:
        """Without a users file (loopback only): the local user, an operator."""
        return self.sessions.open(User(getpass.getuser(), "operator"), host)

    async def reset(self, session: Session) -> str:
        """The stand back to READY (the cause cleared), by whoever may: the queue's worker when
        its environment is open (it holds the IOC's control), else this process."""
        why = f"from the web page by {session.user.name}@{session.host}"
        status = self.queue.status
        if status is not None and status.environment_open:
            return await self.queue.request(session.user.name, "reset", why=why)
        return await self.stand.reset(why)

    def show_control(self) -> None:
        holder = self.lease.holder
        self.hub.set("control", holder.shown() if holder else None)

    async def start(self) -> None:
        self.hub.set("stand", {"name": self.options.config.name, "prefix": self.options.prefix})
        self.show_control()
        self.stand.start()
        self._tasks = [
            asyncio.create_task(self.queue.run()),
            asyncio.create_task(self._housekeeping()),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            await cancel_and_wait(task)
        self.stand.close()

    async def _housekeeping(self) -> None:
        """Expired sessions give control back; the reports' list and Tiled's address refresh."""
        while True:
            holder = self.lease.holder
            if holder is not None:
                try:
                    self.sessions.get(holder.token)
                except WebError:
                    self.lease.forget(holder.token)
                    self.show_control()
            self.hub.set("reports", self._reports())
            self.hub.set("tiled", self._tiled())
            await asyncio.sleep(2.0)

    def _reports(self) -> list[dict[str, str]]:
        if not self.reports.is_dir():
            return []
        return [
            {"module": index.parent.name, "href": f"/reports/{index.parent.name}/index.html"}
            for index in sorted(self.reports.glob("*/index.html"))
        ]

    def _tiled(self) -> str:
        storage = self.options.config.storage
        if storage.tiled is not None:
            return str(storage.tiled).rstrip("/")
        try:
            url = json.loads((storage.data_path / STATE_FILE).read_text())["url"]
        except (OSError, ValueError, KeyError):
            return ""
        return str(url).rstrip("/")


def since(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))
