"""Who may act from the web page: one operator at a time holds control; everyone else watches.

The holder is a user and the host their browser connects from, since a time. Taking control is
refused while another holds it; the holder releases it, or it is released when their session
ends (logout or expiry). Observers never hold it. The E-stop needs no control. Who drives the
instruments (the queue server's worker, a shell) is the IOC's `CONTROL:OWNER`, shown beside it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from teststand.app.web.accounts import Session
from teststand.app.web.errors import ActionRefused


@dataclass(frozen=True)
class Holder:
    user: str
    host: str
    since: float
    token: str

    def shown(self) -> dict[str, object]:
        return {"user": self.user, "host": self.host, "since": self.since}


class ControlLease:
    def __init__(self) -> None:
        self.holder: Holder | None = None

    def _describe(self) -> str:
        assert self.holder is not None
        since = time.strftime("%H:%M:%S", time.localtime(self.holder.since))
        return f"{self.holder.user} ({self.holder.host}) since {since}"

    def take(self, session: Session) -> Holder:
        if not session.user.operator:
            raise ActionRefused(
                f"{session.user.name} is an observer: observers watch and may press the E-stop "
                "only; log in as an operator to take control"
            )
        if self.holder is not None and self.holder.user != session.user.name:
            raise ActionRefused(
                f"control is held by {self._describe()}: ask them to release it first"
            )
        if self.holder is None or self.holder.token != session.token:
            self.holder = Holder(session.user.name, session.host, time.time(), session.token)
        return self.holder

    def release(self, session: Session) -> None:
        if self.holder is None:
            return
        if self.holder.user != session.user.name:
            raise ActionRefused(f"control is held by {self._describe()}; only they can release it")
        self.holder = None

    def check(self, session: Session) -> None:
        """Refuse an action unless `session`'s user is an operator holding control."""
        if not session.user.operator:
            raise ActionRefused(
                f"{session.user.name} is an observer: observers cannot act on the stand "
                "(except the E-stop)"
            )
        if self.holder is None:
            raise ActionRefused("take control first: nobody holds control of the stand")
        if self.holder.user != session.user.name:
            raise ActionRefused(
                f"control is held by {self._describe()}: wait until they release it"
            )

    def forget(self, token: str) -> bool:
        """Release control held by a session that ended; True when it was held."""
        if self.holder is not None and self.holder.token == token:
            self.holder = None
            return True
        return False
