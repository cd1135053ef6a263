"""Writing one run into Tiled with bluesky-tiled-plugins, batching events until `flush()`.

The documents go through the plugin's `RunNormalizer` into its run writer, exactly as with
`TiledWriter`, so runs read back as ordinary `BlueskyRun`s. The only addition is `flush()`:
write the events (and stream data) batched so far, so a background thread can flush on a timer.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from bluesky_tiled_plugins.writing.tiled_writer import (  # type: ignore[import-untyped]
    RunNormalizer,
    _RunWriter,
)

from teststand.storage.journal import Document

NO_AUTOMATIC_BATCH = 1_000_000


class _FlushableRunWriter(_RunWriter):  # type: ignore[misc]
    def flush(self) -> None:
        for desc_name, cache in self._internal_data_cache.items():
            if cache:
                self._write_internal_data(cache, desc_node=self._desc_nodes[desc_name])
                cache.clear()
        while self._external_data_cache:
            _, doc = self._external_data_cache.popitem()
            self._write_external_data(doc)


class RunWriter:
    """Feeds one run's documents into a Tiled container; events are written on `flush()`."""

    def __init__(self, client: Any) -> None:
        self._writer = _FlushableRunWriter(
            client.include_data_sources(), batch_size=NO_AUTOMATIC_BATCH
        )
        self._normalizer = RunNormalizer()
        self._normalizer.subscribe(self._writer)

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        self._normalizer(name, doc)

    def flush(self) -> None:
        self._writer.flush()


def write_run(client: Any, documents: list[Document]) -> None:
    """Write a whole run at once (replay)."""
    writer = RunWriter(client)
    for name, doc in documents:
        writer(name, doc)
    writer.flush()


class RunTally:
    """Counts what Tiled must hold for a run: events with internal data per stream."""

    def __init__(self) -> None:
        self.rows: Counter[str] = Counter()
        self.has_stop = False
        self._streams: dict[str, str] = {}
        self._internal: set[str] = set()

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        if name == "descriptor":
            self._streams[doc["uid"]] = doc["name"]
            if any("external" not in key for key in doc.get("data_keys", {}).values()):
                self._internal.add(doc["name"])
        elif name == "event":
            self.rows[self._streams.get(doc["descriptor"], "?")] += 1
        elif name == "event_page":
            self.rows[self._streams.get(doc["descriptor"], "?")] += len(doc.get("seq_num", []))
        elif name == "stop":
            self.has_stop = True

    @property
    def expected_rows(self) -> dict[str, int]:
        return {stream: n for stream, n in self.rows.items() if stream in self._internal}

    @classmethod
    def of(cls, documents: list[Document]) -> RunTally:
        tally = cls()
        for name, doc in documents:
            tally(name, doc)
        return tally


def rows_against_stop(rows: list[tuple[int, float]], num_events: int) -> str:
    """What is wrong with a stream's stored `(seq_num, time)` rows against its stop document's
    count ("" when nothing is): every seq_num 1..`num_events` there, no row twice.

    A pause or a suspension rewinds a plan to its last checkpoint, and the RunEngine's counter
    with it: an event read after it is taken again under the same seq_num (at a later time)
    and counted once in the stop document, so a stream can rightly hold more rows than
    `num_events`. When the run ends before the rewound events are taken again (a trip failing
    the suspended plan), their seq_nums follow the stop's count: `num_events + 1` onwards, with
    no gap. Any other seq_num is an error.
    """
    unique = set(rows)
    if len(unique) != len(rows):
        return f"{len(rows) - len(unique)} row(s) stored twice"
    expected = set(range(1, num_events + 1))
    seq_nums = {int(seq) for seq, _ in rows}
    if expected - seq_nums:
        return f"seq_num {sorted(expected - seq_nums)[:5]} missing of {num_events}"
    beyond = seq_nums - expected
    if beyond and beyond != set(range(num_events + 1, max(beyond) + 1)):
        return f"seq_num {sorted(beyond)[:5]} beyond the stop's {num_events}, with a gap"
    return ""


def stored_problems(client: Any, run_uid: str, tally: RunTally) -> list[str]:
    """Why the run in Tiled differs from its tally (empty: stored completely, exactly once)."""
    if run_uid not in client:
        return ["the run is not in Tiled"]
    run = client[run_uid]
    problems: list[str] = []
    if tally.has_stop and not run.metadata.get("stop"):
        problems.append("the stop document is missing")
    for stream, count in tally.expected_rows.items():
        try:
            table = run[stream].base["internal"].read(columns=["seq_num", "time"])
        except KeyError:
            problems.append(f"stream {stream!r} has no event table")
            continue
        # a pause rewinds a plan to its checkpoint: an event can come again with the same
        # seq_num, but never with the same time, as a row written twice would
        rows = list(zip(table["seq_num"], table["time"], strict=True))
        if len(rows) != count or len(set(rows)) != len(rows):
            problems.append(f"stream {stream!r} holds {len(rows)} rows, expected {count} unique")
    return problems
