"""Finding a module's runs in Tiled: a small typed helper over Tiled's own queries.

Runs carry `module_id`, `stage`, `test` and `stand` in their start document (plan metadata) and
their verdict as the run container's top-level `verdict` metadata (`Catalog.set_verdict`). Every
search here is a plain Tiled query; `Catalog.queries(...)` returns them for use without this
helper, e.g. `client.search(Key("start.module_id") == "M-0042")`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tiled.queries import Key  # type: ignore[import-untyped]

from .storage.client import connect
from .storage.errors import StorageError

START_KEYS = ("module_id", "stage", "test", "stand")


class RunNotFound(StorageError, KeyError):
    """No run matches; the message names the search."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class RunSummary:
    uid: str
    time: float
    module_id: str | None
    stage: str | None
    test: str | None
    stand: str | None
    verdict: str | None
    exit_status: str | None

    @classmethod
    def of(cls, uid: str, metadata: dict[str, Any]) -> RunSummary:
        start = metadata.get("start", {})
        stop = metadata.get("stop") or {}
        return cls(
            uid=uid,
            time=float(start.get("time", 0.0)),
            module_id=start.get("module_id"),
            stage=start.get("stage"),
            test=start.get("test"),
            stand=start.get("stand"),
            verdict=metadata.get("verdict"),
            exit_status=stop.get("exit_status"),
        )


def _timestamp(value: float | datetime) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value)


class Catalog:
    """Searches over the runs of one Tiled container (the server's root by default)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    @classmethod
    def from_uri(cls, uri: str, api_key: str | None = None) -> Catalog:
        return cls(connect(uri, api_key))

    @staticmethod
    def queries(
        *,
        module_id: str | None = None,
        stage: str | None = None,
        test: str | None = None,
        stand: str | None = None,
        verdict: str | None = None,
        since: float | datetime | None = None,
        until: float | datetime | None = None,
    ) -> list[Any]:
        """The plain Tiled queries for these filters (all must hold)."""
        found: list[Any] = []
        for key, value in zip(START_KEYS, (module_id, stage, test, stand), strict=True):
            if value is not None:
                found.append(Key(f"start.{key}") == value)
        if verdict is not None:
            found.append(Key("verdict") == verdict)
        if since is not None:
            found.append(Key("start.time") >= _timestamp(since))
        if until is not None:
            found.append(Key("start.time") < _timestamp(until))
        return found

    def _results(self, newest_first: bool, **filters: Any) -> Any:
        results = self.client
        for query in self.queries(**filters):
            results = results.search(query)
        return results.sort(("start.time", -1 if newest_first else 1))

    def search(self, *, newest_first: bool = False, **filters: Any) -> list[RunSummary]:
        """Runs matching every filter (module_id, stage, test, stand, verdict, since, until)."""
        results = self._results(newest_first, **filters)
        return [RunSummary.of(uid, node.metadata) for uid, node in results.items()]

    def newest(self, module_id: str, test: str) -> Any:
        """The newest run of `test` for `module_id`, as a `BlueskyRun` client."""
        results = self._results(True, module_id=module_id, test=test)
        for _, run in results.items()[:1]:
            return run
        raise RunNotFound(f"no run of test {test!r} for module {module_id!r} in Tiled")

    def run(self, uid: str) -> Any:
        try:
            return self.client[uid]
        except KeyError:
            raise RunNotFound(f"no run {uid!r} in Tiled; search by module_id to find it") from None

    def xarray(self, uid: str, stream: str = "primary") -> Any:
        """One stream of a run as an `xarray.Dataset`."""
        return self._stream(uid, stream).read()

    def pandas(self, uid: str, stream: str = "primary") -> Any:
        """One stream of a run as a `pandas.DataFrame` (one row per event)."""
        return self._stream(uid, stream).read().to_dataframe()

    def _stream(self, uid: str, stream: str) -> Any:
        run = self.run(uid)
        if stream not in run:
            raise RunNotFound(f"run {uid} has no stream {stream!r}; it has {list(run)}")
        return run[stream]

    def set_verdict(self, uid: str, verdict: str) -> None:
        """Record the run's verdict (e.g. "pass", "fail") in its metadata."""
        self.run(uid).update_metadata({"verdict": verdict})
