"""Indexes for the run searches (`teststand.storage.catalog`) in Tiled's SQL catalog.

What Tiled's query translation emits for each search, and what serves it:

- `Key(k) == v` (module_id, test, stage, stand, verdict): on PostgreSQL `metadata @> {...}`,
  served by Tiled's GIN index `ix_nodes_metadata`; on SQLite `json_extract(metadata, PATH) = v`,
  served by `ix_teststand_<key>` (`ix_teststand_verdict` also holds the start time).
- `Key("start.time") >= t`, `< t`: `ix_teststand_start_time` on both (PostgreSQL:
  `metadata #> '{start,time}'`).
- `FullText('"M-0042"')` (a module in `start.module_ids`): Tiled's own full-text index, the GIN
  `metadata_tsvector_search` on PostgreSQL and the FTS5 table `metadata_fts5` on SQLite.

On SQLite, Tiled binds the JSON path of `json_extract(metadata, ?)` as a parameter, and SQLite
never matches a parameter to an index expression; it also joins its FTS5 table in an order that
probes the table once per run. `install_query_translations()` (called by `teststand tiled serve`)
registers translations that emit the same conditions with the path written out and FTS5 as a
subquery. An upstream `tiled serve` reads an indexed catalog unchanged (the indexes are plain SQL
indexes on Tiled's `nodes` table), only without the SQLite speed-up.
"""

from __future__ import annotations

import asyncio
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from teststand.storage.errors import StorageError

SQLITE_INDEXES: dict[str, tuple[str, ...]] = {
    "ix_teststand_module_id": ("start.module_id",),
    "ix_teststand_test": ("start.test",),
    "ix_teststand_stage": ("start.stage",),
    "ix_teststand_stand": ("start.stand",),
    "ix_teststand_verdict": ("verdict", "start.time"),
    "ix_teststand_start_time": ("start.time",),
}
POSTGRESQL_INDEXES: dict[str, str] = {
    "ix_teststand_start_time": "(parent, (metadata #> '{start,time}'))",
}
TILED_OWN = {  # Tiled's own indexes that the searches rely on, per dialect
    "sqlite": {"metadata_fts5": "table"},
    "postgresql": {"ix_nodes_metadata": "index", "metadata_tsvector_search": "index"},
}
_VALUE_TYPES = (str, int, float, bool)  # the values Tiled's SQLite translation handles


class CatalogIndexError(StorageError):
    """The catalog cannot be indexed (not found, not a Tiled catalog, or too old)."""


@dataclass
class IndexReport:
    created: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    tiled_own: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [
            *(f"created {name}" for name in self.created),
            *(f"present {name}" for name in self.present),
            *(f"present {name} (Tiled's own)" for name in self.tiled_own),
        ]


def json_path(key: str) -> str:
    """The SQLite JSON path Tiled (through SQLAlchemy) builds for a dotted key."""
    return "$" + "".join(f'."{segment}"' for segment in key.split("."))


def index_statements(dialect: str) -> dict[str, str]:
    """name -> `CREATE INDEX IF NOT EXISTS` statement for this dialect's teststand indexes."""
    if dialect == "sqlite":
        return {
            name: f"CREATE INDEX IF NOT EXISTS {name} ON nodes (parent, "
            + ", ".join(f"json_extract(metadata, '{json_path(key)}')" for key in keys)
            + ")"
            for name, keys in SQLITE_INDEXES.items()
        }
    return {
        name: f"CREATE INDEX IF NOT EXISTS {name} ON nodes {columns}"
        for name, columns in POSTGRESQL_INDEXES.items()
    }


def engine_uri(uri: str) -> str:
    """The SQLAlchemy URI (with Tiled's async driver) of a catalog URI or SQLite file path."""
    from tiled.utils import ensure_specified_sql_driver  # type: ignore[import-untyped]

    if uri.startswith("postgres://"):
        uri = "postgresql://" + uri[len("postgres://") :]
    if re.match(r"^[a-z0-9+]+://", uri) is None:
        uri = f"sqlite:///{Path(uri).expanduser().resolve()}"
    uri = str(ensure_specified_sql_driver(uri))
    if uri.startswith("sqlite"):
        path = uri.split(":///", 1)[-1]
        if not Path(path).is_file():
            raise CatalogIndexError(
                f"no SQLite catalog at {path}; give the catalog file (e.g. DATA/catalog.db of "
                "`teststand tiled serve --data DATA`) or a postgresql://… URI"
            )
    return uri


_OBJECTS = {
    "sqlite": "SELECT name, type FROM sqlite_master",
    "postgresql": "SELECT indexname, 'index' FROM pg_indexes WHERE schemaname = current_schema() "
    "UNION SELECT tablename, 'table' FROM pg_tables WHERE schemaname = current_schema()",
}


def _sql_objects(connection: Any) -> dict[str, str]:
    """name -> "table" or "index" of everything in the catalog database."""
    from sqlalchemy import text

    found = {
        str(name): str(kind)
        for name, kind in connection.execute(text(_OBJECTS[connection.dialect.name]))
    }
    if found.get("nodes") != "table":
        raise CatalogIndexError(
            "the database has no `nodes` table: it is not a Tiled catalog; create one with "
            "`teststand tiled serve` (or `tiled catalog init URI`)"
        )
    return found


async def _run(uri: str, work: Callable[[Any], Any]) -> Any:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(engine_uri(uri))
    try:
        async with engine.begin() as connection:
            return await connection.run_sync(work)
    except StorageError:
        raise
    except Exception as exc:
        raise CatalogIndexError(f"cannot index the catalog: {exc}") from None
    finally:
        await engine.dispose()


def _ensure(connection: Any) -> IndexReport:
    from sqlalchemy import text

    dialect = connection.dialect.name
    found = _sql_objects(connection)
    report = IndexReport()
    for name, kind in TILED_OWN.get(dialect, {}).items():
        if found.get(name) != kind:
            raise CatalogIndexError(
                f"the catalog lacks Tiled's {kind} {name}: upgrade it with "
                "`tiled catalog upgrade-database URI`, then index again"
            )
        report.tiled_own.append(name)
    for name, statement in index_statements(dialect).items():
        (report.present if name in found else report.created).append(name)
        connection.execute(text(statement))
    return report


def _drop(connection: Any) -> list[str]:
    from sqlalchemy import text

    found = _sql_objects(connection)
    names = [name for name in index_statements(connection.dialect.name) if name in found]
    for name in names:
        connection.execute(text(f"DROP INDEX IF EXISTS {name}"))
    return names


def ensure_indexes(uri: str) -> IndexReport:
    """Create the teststand indexes on the catalog at `uri` (idempotent)."""
    report: IndexReport = asyncio.run(_run(uri, _ensure))
    return report


def drop_indexes(uri: str) -> list[str]:
    """Drop the teststand indexes (Tiled's own stay); returns the names dropped."""
    names: list[str] = asyncio.run(_run(uri, _drop))
    return names


def _dialect(tree: Any) -> str:
    return str(tree.context.engine.dialect.name)


def _literal_path_op(query: Any, tree: Any, operation: Callable[[Any, Any], Any]) -> Any:
    """Tiled's SQLite condition `json_extract(metadata, PATH) OP value`, PATH written out."""
    from sqlalchemy import String, bindparam, func
    from tiled.catalog import orm  # type: ignore[import-untyped]
    from tiled.catalog.adapter import binary_op  # type: ignore[import-untyped]

    if _dialect(tree) != "sqlite" or type(query.value) not in _VALUE_TYPES:
        return binary_op(query, tree, operation)
    path = bindparam(None, json_path(query.key), type_=String, literal_execute=True)
    condition = operation(func.json_extract(orm.Node.metadata_, path), query.value)
    return tree.new_variation(conditions=[*tree.conditions, condition])


def _comparison(query: Any, tree: Any) -> Any:
    operators = {"lt": operator.lt, "le": operator.le, "gt": operator.gt, "ge": operator.ge}
    return _literal_path_op(query, tree, operators[str(query.operator.value)])


def _full_text(query: Any, tree: Any) -> Any:
    """On SQLite, FTS5 as `nodes.id IN (matching rowids)`: a join is probed once per run."""
    from sqlalchemy import select
    from tiled.catalog import orm
    from tiled.catalog.adapter import full_text

    if _dialect(tree) != "sqlite":
        return full_text(query, tree)
    fts = orm.metadata_fts5
    matching = select(fts.c.rowid).where(fts.c.metadata.match(query.text))
    return tree.new_variation(conditions=[*tree.conditions, orm.Node.id.in_(matching)])


def install_query_translations() -> None:
    """Register the SQLite translations above with Tiled's catalog adapter (idempotent)."""
    from tiled.catalog.adapter import CatalogNodeAdapter
    from tiled.queries import Comparison, Eq, FullText  # type: ignore[import-untyped]

    CatalogNodeAdapter.register_query(Eq, partial(_literal_path_op, operation=operator.eq))
    CatalogNodeAdapter.register_query(Comparison, _comparison)
    CatalogNodeAdapter.register_query(FullText, _full_text)
