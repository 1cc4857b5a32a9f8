"""``state: local`` over a remote warehouse: models run there, their results are pulled here.

For a small warehouse, or one where reverse_etl may not create a schema, the snapshots stay in
the local DuckDB state file and the diff runs in a local DuckDB engine, exactly as for the
DuckDB warehouse. Each synced model is read once from the warehouse, only the columns the sync
maps, in record batches (Arrow where the driver offers it) into a DuckDB table with the
warehouse's column types translated by sqlglot. Nothing is written to the warehouse: its models
are temporary views of the session.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

import duckdb
from sqlglot import exp

from reverse_etl.modeling import Model
from reverse_etl.modeling.model import quote
from reverse_etl.warehouse.base import Warehouse
from reverse_etl.warehouse.duckdb import DuckDBSession
from reverse_etl.warehouse.sql import SqlSession, SqlWarehouse, q


def duckdb_type(native: str, dialect: str) -> str | None:
    """The DuckDB type for a warehouse column type, or None if sqlglot cannot say."""
    try:
        built = exp.DataType.build(native, dialect=dialect)
    except Exception:  # an engine-specific type sqlglot does not know
        return None
    if built.this == exp.DataType.Type.USERDEFINED:
        return None
    return built.sql("duckdb")


class PullSession(DuckDBSession):
    """A DuckDB session whose models live in a remote warehouse session."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, root: Path, remote: SqlSession) -> None:
        super().__init__(conn, root)
        self.remote = remote
        self._types: dict[str, dict[str, tuple[str, bool]]] = {}
        self._pulled: dict[tuple[str, tuple[str, ...]], str] = {}

    def build(self, models: list[Model]) -> None:
        self.remote.build(models)

    def columns(self, model: str) -> dict[str, str]:
        if model not in self._types:
            types: dict[str, tuple[str, bool]] = {}
            for name, native in self.remote.columns(model).items():
                local = duckdb_type(native, self.remote.dialect)
                # A type DuckDB cannot hold comes over as its text, which still diffs exactly.
                types[name] = (local, False) if local else ("VARCHAR", True)
            self._types[model] = types
        return {name: t for name, (t, _) in self._types[model].items()}

    def relation(self, model: str, columns: list[str]) -> str:
        wanted = tuple(columns)
        if (model, wanted) in self._pulled:
            return self._pulled[(model, wanted)]
        types = self._types.get(model) or {}
        if not types:
            self.columns(model)
            types = self._types[model]
        table = f"memory.main.{quote(f'__retl_pull_{len(self._pulled) + 1}')}"
        self.conn.execute(f"CREATE TABLE {table} ({', '.join(f'{quote(c)} {types[c][0]}' for c in columns)})")
        select = ", ".join(f"CAST({q(c)} AS TEXT) AS {q(c)}" if types[c][1] else q(c) for c in columns)
        sql = self.remote.native(f"SELECT {select} FROM {q(model)}")
        for batch in self.remote.warehouse.fetch_arrow(self.remote, sql):
            self.conn.register("__retl_batch", batch)
            try:
                self.conn.execute(f"INSERT INTO {table} SELECT * FROM __retl_batch")
            finally:
                self.conn.unregister("__retl_batch")
        self._pulled[(model, wanted)] = table
        return table


class PullWarehouse(Warehouse):
    """Wraps a pushdown adapter for ``state: local``: the diff runs in local DuckDB."""

    SUPPORTS_TRANSACTIONS: ClassVar[bool] = True
    PUSHDOWN: ClassVar[bool] = False

    def __init__(self, remote: SqlWarehouse, root: Path) -> None:
        self.remote = remote
        self.root = root
        self.DIALECT = remote.DIALECT  # type: ignore[misc]  # models compile for the remote engine

    @contextmanager
    def session(self) -> Iterator[PullSession]:
        conn = duckdb.connect(":memory:")
        session: PullSession | None = None
        try:
            tmp = self.root / ".retl" / "tmp"
            tmp.mkdir(parents=True, exist_ok=True)
            conn.execute("SET temp_directory = ?", [str(tmp)])
            conn.execute("SET preserve_insertion_order = false")
            with self.remote.session() as remote:
                session = PullSession(conn, self.root, remote)
                yield session
        finally:
            if session is not None:
                session.close()  # also gives back the umask held while the state was open
            else:
                conn.close()
