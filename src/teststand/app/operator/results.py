"""Reading an item's runs back from Tiled."""

from __future__ import annotations

import time

from teststand.app.operator.connection import ManagerConnection
from teststand.app.operator.errors import OperatorError
from teststand.app.operator.items import RunResult
from teststand.storage.catalog import Catalog, RunNotFound


class Results(ManagerConnection):
    @property
    def catalog(self) -> Catalog:
        """The stand's runs in Tiled (its server, or the embedded one, started if needed)."""
        if self._catalog is None:
            if self.storage is None:
                raise OperatorError(
                    "no storage settings: give Operator(storage=load_stand(FILE).storage) or "
                    "catalog=Catalog(...) to read results"
                )
            from teststand.storage.session import storage_client

            self._catalog = Catalog(self._stack.enter_context(storage_client(self.storage)))
        return self._catalog

    def results(self, uid: str, *, wait: float = 30.0) -> list[RunResult]:
        """The runs of queue item `uid` (found by the run uids in its history entry), or the run
        `uid` itself, from Tiled. Waits up to `wait` s for each run to be stored complete (its
        stop document; for an IV run, its analysis)."""
        uid = self.full_uid(uid)
        history = self._call("read the history", self._api.history_get, reload=True)["items"]
        items = {str(i["item_uid"]): i for i in history}
        if uid not in items:
            return [self._stored(uid, wait, known=False)]
        run_uids = (items[uid].get("result") or {}).get("run_uids") or ()
        return [self._stored(str(run_uid), wait) for run_uid in run_uids]

    def _stored(self, uid: str, wait: float, known: bool = True) -> RunResult:
        deadline = time.monotonic() + wait
        while True:
            try:
                result = RunResult.of(uid, self.catalog.run(uid))
            except RunNotFound:
                if not known:
                    raise RunNotFound(
                        f"{uid} is neither a queue item in the history nor a run in Tiled; "
                        "`teststand queue status` lists the latest items"
                    ) from None
                if time.monotonic() > deadline:
                    raise RunNotFound(
                        f"run {uid} is not in Tiled after {wait:g} s: it may still be in the "
                        "worker's journal (replayed when Tiled answers; `teststand storage "
                        "replay`)"
                    ) from None
            else:
                complete = result.exit_status is not None and (
                    result.test != "iv" or result.analysis is not None
                )
                if complete or time.monotonic() > deadline:
                    return result
            time.sleep(0.2)  # Tiled has no notifications: poll the server
