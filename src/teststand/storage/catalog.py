"""Finding a module's runs in Tiled: a small typed helper over Tiled's own queries.

Runs carry `module_ids` (every module of the run), `module_id` (single-module runs), `stage`,
`test` and `stand` in their start document (plan metadata) and their verdict as the run
container's top-level `verdict` metadata (`Catalog.set_verdict`). Every search here is a plain
Tiled query; `Catalog.queries(...)` returns them for use without this helper, e.g.
`client.search(Contains("start.module_ids", "M-0042"))`.

A module's runs are those listing it in `start.module_ids`, or naming it in `start.module_id`.
Tiled has no OR query and no indexed list membership, so the helper asks for the runs whose
metadata holds the module id as a word (`FullText('"M-0042"')`, served by Tiled's full-text index
on SQLite and PostgreSQL) and keeps those that list it exactly; plain queries must do the same.
A module id that is not one word of letters, digits and `._-` falls back to `Contains` on
`start.module_ids` and `Key("start.module_id") ==` (two unindexed searches, merged by start time).
Every other filter is a `Key` query served by the catalog indexes (`teststand.storage.indexes`).
"""

from __future__ import annotations

import heapq
import re
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

from tiled.client.utils import handle_error  # type: ignore[import-untyped]
from tiled.queries import Contains, FullText, Key  # type: ignore[import-untyped]
from tiled.query_registration import default_query_registry  # type: ignore[import-untyped]

from teststand.storage.client import connect
from teststand.storage.errors import StorageError
from teststand.storage.frames import frame, read_labelled

START_KEYS = ("stage", "test", "stand")
PAGE = 300  # runs per request of a metadata-only search (Tiled's largest page)
WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # one token for FTS5 and PostgreSQL alike


class RunNotFound(StorageError, KeyError):
    """No run matches; the message names the search."""

    def __str__(self) -> str:
        return str(self.args[0])


MetadataItem = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class RunSummary:
    """One run as a search lists it. Searched by module, `module_id`, `slot`, `verdict` and
    `reasons` are that module's own (its IV result in the run); `run_verdict` is the run's."""

    uid: str
    time: datetime  # the run's start, in the local time zone
    module_id: str | None
    stage: str | None
    test: str | None
    stand: str | None
    verdict: str | None
    exit_status: str | None
    module_ids: tuple[str, ...] = ()
    slot: str | None = None
    reasons: tuple[str, ...] = ()
    run_verdict: str | None = None

    @classmethod
    def of(cls, uid: str, metadata: dict[str, Any], module_id: str | None = None) -> RunSummary:
        start = metadata.get("start", {})
        stop = metadata.get("stop") or {}
        module = module_id if module_id is not None else start.get("module_id")
        slot: str | None = None
        verdict: str | None = metadata.get("verdict")
        reasons: tuple[str, ...] = ()
        if module is not None:
            slot, verdict, reasons = module_result(metadata, str(module))
        return cls(
            module_ids=tuple(run_module_ids(start)),
            uid=uid,
            time=datetime.fromtimestamp(float(start.get("time", 0.0))).astimezone(),
            module_id=module,
            stage=start.get("stage"),
            test=start.get("test"),
            stand=start.get("stand"),
            verdict=verdict,
            exit_status=stop.get("exit_status"),
            slot=slot,
            reasons=reasons,
            run_verdict=metadata.get("verdict"),
        )


def run_module_ids(start: dict[str, Any]) -> list[str]:
    """The modules of a run from its start document: `module_ids`, else `module_id`."""
    listed = start.get("module_ids")
    if isinstance(listed, list):
        return [str(module) for module in listed]
    single = start.get("module_id")
    return [str(single)] if single is not None else []


def module_slot(start: Mapping[str, Any], module_id: str) -> str | None:
    """The slot that held `module_id` in a run (its start document's `slots`), or None."""
    for slot, info in (start.get("slots") or {}).items():
        if isinstance(info, Mapping) and info.get("module_id") == module_id:
            return str(slot)
    return None


def module_result(
    metadata: Mapping[str, Any], module_id: str
) -> tuple[str | None, str | None, tuple[str, ...]]:
    """(slot, verdict, reasons) of one module in a run: its slot's stored analysis; the run's
    verdict when the module is the run's only one; no verdict otherwise."""
    start = metadata.get("start", {})
    slot = module_slot(start, module_id)
    stored = ((metadata.get("analysis") or {}).get("slots") or {}).get(slot)
    if isinstance(stored, Mapping):
        return slot, stored.get("verdict"), tuple(str(r) for r in stored.get("reasons") or ())
    if run_module_ids(start) == [module_id]:
        return slot, metadata.get("verdict"), ()
    return slot, None, ()


def _timestamp(value: float | datetime) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value)


def _start_time(item: tuple[str, Mapping[str, Any]]) -> float:
    return float(item[1].get("start", {}).get("time") or 0.0)


def search_params(queries: list[Any], newest_first: bool) -> dict[str, Any]:
    """HTTP parameters of Tiled's search route for these queries, by start time, metadata only
    (the server then skips counting each run's children)."""
    params: dict[str, Any] = defaultdict(list)
    for query in queries:
        name = default_query_registry.query_type_to_name[type(query)]
        for field, value in query.encode().items():
            if value is not None:
                params[f"filter[{name}][condition][{field}]"].append(value)
    params.update(sort=f"{'-' if newest_first else ''}start.time", fields="metadata")
    return dict(params)


class Catalog:
    """Searches over the runs of one Tiled container (the server's root by default)."""

    page: int = PAGE  # runs per request of a metadata-only search

    def __init__(self, client: Any, page: int = PAGE) -> None:
        self.client = client
        self.page = page

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
        """The plain Tiled queries for these filters (all must hold).

        `module_id` gives `FullText('"M-0042"')`: it finds every run naming the module anywhere
        in its metadata; keep those whose `start.module_ids` (or `start.module_id`) holds it.
        """
        found: list[Any] = []
        if module_id is not None:
            found.append(
                FullText(f'"{module_id}"')
                if WORD.fullmatch(module_id)
                else Contains("start.module_ids", module_id)
            )
        for key, value in zip(START_KEYS, (stage, test, stand), strict=True):
            if value is not None:
                found.append(Key(f"start.{key}") == value)
        if verdict is not None:
            found.append(Key("verdict") == verdict)
        if since is not None:
            found.append(Key("start.time") >= _timestamp(since))
        if until is not None:
            found.append(Key("start.time") < _timestamp(until))
        return found

    def _metadata(self, queries: list[Any], newest_first: bool) -> Iterator[MetadataItem]:
        """(uid, metadata) of the runs matching every query, by start time, page by page."""
        url: str | None = self.client.item["links"]["search"]
        params = {**search_params(queries, newest_first), "page[limit]": self.page}
        http = self.client.context.http_client
        while url is not None:
            base, _, query = url.partition("?")
            paging = {k: v for k, v in parse_qs(query).items() if k.startswith("page[")}
            content = handle_error(http.get(base, params={**params, **paging})).json()
            for item in content["data"]:
                yield item["id"], item["attributes"]["metadata"]
            # A short page is the last: Tiled's `next` link follows an estimated count (on
            # PostgreSQL, the planner's), which can run far past the last match.
            url = content["links"].get("next") if len(content["data"]) == self.page else None

    def _matches(
        self, newest_first: bool, module_id: str | None, filters: dict[str, Any]
    ) -> Iterator[MetadataItem]:
        """(uid, metadata) of the runs matching every filter; with `module_id`, runs that list
        that module, and `verdict` is the module's own."""
        if module_id is None:
            yield from self._metadata(self.queries(**filters), newest_first)
            return
        verdict = filters.pop("verdict", None)
        searches = [self._metadata(self.queries(module_id=module_id, **filters), newest_first)]
        if not WORD.fullmatch(module_id):
            single = [*self.queries(**filters), Key("start.module_id") == module_id]
            searches.append(self._metadata(single, newest_first))
        seen: set[str] = set()
        for uid, metadata in heapq.merge(*searches, key=_start_time, reverse=newest_first):
            if uid not in seen and module_id in run_module_ids(metadata.get("start", {})):
                seen.add(uid)
                if verdict is None or module_result(metadata, module_id)[1] == verdict:
                    yield uid, metadata

    def runs(
        self, *, newest_first: bool = False, module_id: str | None = None, **filters: Any
    ) -> Iterator[tuple[str, Any]]:
        """(uid, `BlueskyRun` client) of the runs matching every filter, by start time.

        Filters as in `search`. Lazy: Tiled is asked page by page as the iteration goes on,
        and for each run's client as it is reached.
        """
        for uid, _ in self._matches(newest_first, module_id, filters):
            yield uid, self.run(uid)

    def search(
        self, *, newest_first: bool = False, module_id: str | None = None, **filters: Any
    ) -> list[RunSummary]:
        """Runs matching every filter (module_id, stage, test, stand, verdict, since, until).

        With `module_id`, each summary holds that module's own result in the run, and `verdict`
        filters on it."""
        return [
            RunSummary.of(uid, metadata, module_id)
            for uid, metadata in self._matches(newest_first, module_id, filters)
        ]

    def newest(self, module_id: str, test: str) -> Any:
        """The newest run of `test` for `module_id`, as a `BlueskyRun` client."""
        for uid, _ in self._matches(True, module_id, {"test": test}):
            return self.run(uid)
        raise RunNotFound(f"no run of test {test!r} for module {module_id!r} in Tiled")

    def module_ids(self) -> list[str]:
        """Every module id that some run names (`start.module_ids` or `start.module_id`)."""
        found: set[str] = set()
        distinct = self.client.distinct("start.module_ids", "start.module_id")["metadata"]
        for key in ("start.module_ids", "start.module_id"):
            for entry in distinct.get(key) or []:
                value = entry["value"]
                values = value if isinstance(value, list) else [value]
                found.update(str(module) for module in values if module)
        return sorted(found)

    def run(self, uid: str) -> Any:
        try:
            return self.client[uid]
        except KeyError:
            raise RunNotFound(f"no run {uid!r} in Tiled; search by module_id to find it") from None

    def xarray(self, uid: str, stream: str = "primary") -> Any:
        """One stream of a run as an `xarray.Dataset`: `units` and `long_name` on each
        variable, the run (start and stop documents, verdict, analysis) in `attrs`."""
        self._stream(uid, stream)  # a clear error for a missing stream
        return read_labelled(self.run(uid), stream)

    def pandas(self, uid: str, stream: str = "primary") -> Any:
        """One stream of a run as a `pandas.DataFrame`, one row per event: a `DatetimeIndex`,
        per slot its bias (`slotN-bias`), leakage current and temperature first, and in `attrs`
        the `units` and `data_keys` of the columns and the run (`teststand.storage.frames`)."""
        return frame(self.xarray(uid, stream))

    def _stream(self, uid: str, stream: str) -> Any:
        run = self.run(uid)
        if stream not in run:
            raise RunNotFound(f"run {uid} has no stream {stream!r}; it has {list(run)}")
        return run[stream]

    def set_verdict(self, uid: str, verdict: str) -> None:
        """Record the run's verdict (e.g. "pass", "fail") in its metadata."""
        self.run(uid).update_metadata({"verdict": verdict})
