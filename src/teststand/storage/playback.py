"""A stored run's documents, read back from Tiled in order and fed through callbacks.

```python
from teststand.callbacks.iv_analysis import IVAnalysis
replay(uid, [IVAnalysis(), print], catalog=catalog)
```

The documents come from the server's JSON-seq exporter of `BlueskyRun` (configured in the
shipped tiled.yml): start, descriptors, events and stop, as the RunEngine emitted them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from teststand.storage.catalog import Catalog
from teststand.storage.errors import StorageError

#: Anything that takes bluesky documents: a `CallbackBase`, a `DocumentRouter`, a function.
Callback = Callable[[str, dict[str, Any]], Any]
EXPORT_FORMAT = "application/json-seq"


class ReplayUnsupported(StorageError):
    """The Tiled server cannot give a run's documents (no JSON-seq exporter for BlueskyRun)."""


def documents(run: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """(name, document) pairs of a stored run (a `BlueskyRun` client), in emission order."""
    from tiled.client.utils import ClientError  # type: ignore[import-untyped]

    try:
        for name, doc in run.documents():
            yield str(name), dict(doc)
    except ClientError as exc:
        if exc.response.status_code in (400, 406):
            raise ReplayUnsupported(
                f"the Tiled server at {run.uri} cannot export a run's documents "
                f"({exc.response.status_code}): add `media_types: BlueskyRun: {EXPORT_FORMAT}: "
                "bluesky_tiled_plugins.exporters:json_seq_exporter` to its config (teststand's "
                "shipped tiled.yml has it)"
            ) from None
        raise


def replay(uid: str, callbacks: Iterable[Callback], *, catalog: Catalog) -> int:
    """Feed run `uid`'s documents, in order, to every callback; returns how many were fed."""
    targets = list(callbacks)
    count = 0
    for name, doc in documents(catalog.run(uid)):
        for callback in targets:
            callback(name, doc)
        count += 1
    return count
