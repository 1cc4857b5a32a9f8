"""The DuckDB warehouse: a file opened read-only, models as temp views in an in-memory engine.

reverse_etl never writes the user's warehouse: the file is attached READ_ONLY for the length
of one run, so dbt-duckdb or a notebook can write it between runs. Models become TEMP views
(each model's SELECT runs where it is read: once for the primary-key check, once for the diff);
large intermediate results spill to ``.retl/tmp``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import duckdb

from reverse_etl.config.profiles import StateConfig
from reverse_etl.config.warehouses import DuckDBWarehouseConfig
from reverse_etl.diff.engine import Delta, Differ
from reverse_etl.errors import ModelError, WarehouseLockedError
from reverse_etl.modeling import Model
from reverse_etl.modeling.model import quote
from reverse_etl.plan.plan import sample_rows
from reverse_etl.state.base import StateStore
from reverse_etl.state.store import DuckDBStateStore
from reverse_etl.warehouse.base import Warehouse, WarehouseSession

_RESERVED_ALIASES = {"memory", "temp", "system", "main", "retl_state"}


def is_lock_error(exc: Exception) -> bool:
    text = str(exc)
    return "lock" in text.lower() and ("conflicting" in text.lower() or "could not set lock" in text.lower())


class DuckDBSession(WarehouseSession):
    def __init__(self, conn: duckdb.DuckDBPyConnection, root: Path) -> None:
        self.conn = conn
        self.root = root
        self._umask: int | None = None

    def build(self, models: list[Model]) -> None:
        for model in models:
            try:
                self.conn.execute(f"CREATE OR REPLACE TEMP VIEW {quote(model.name)} AS {model.sql}")
            except duckdb.Error as exc:
                raise ModelError(f"{_rel(model.path, self.root)}: model {model.name!r} failed: {_clean(exc)}") from None

    def columns(self, model: str) -> dict[str, str]:
        rows = self.conn.execute(f"DESCRIBE SELECT * FROM {quote(model)}").fetchall()
        return {str(r[0]): str(r[1]) for r in rows}

    def relation(self, model: str, columns: list[str]) -> str:
        # The model's view itself: DuckDB streams it into the key check and the diff. Copying
        # it into a table first would cost a full write of the model for every sync.
        return quote(model)

    def open_state(self, config: StateConfig, root: Path) -> StateStore:
        path = Path(config.path)
        # The state file is made owner-only, but DuckDB creates its write-ahead log (snapshot rows:
        # customer identifiers) later, with the process umask: hold 077 while the state is open.
        if self._umask is None:
            self._umask = os.umask(0o077)
        return DuckDBStateStore.attach(self.conn, path if path.is_absolute() else root / path)

    def close(self) -> None:
        """Close the engine (DuckDB checkpoints the state on close), then give the umask back."""
        try:
            self.conn.close()
        finally:
            if self._umask is not None:
                os.umask(self._umask)
                self._umask = None

    def differ(self) -> Differ:
        return Differ(self.conn)

    def fetch_delta(self, delta: Delta, lo: int, hi: int) -> list[tuple[Any, ...]]:
        return self.conn.execute(_delta_query(delta), [lo, hi]).fetchall()

    def fetch_delta_arrow(self, delta: Delta, lo: int, hi: int) -> Any:
        # A relation (sql) hands its result over as Arrow without the extra copy of a DB-API
        # result; a cursor of its own, since the shared connection may hold an unfinished result.
        cursor = self.conn.cursor()
        try:
            return cursor.sql(_delta_query(delta), params=[lo, hi]).to_arrow_table()
        finally:
            cursor.close()

    def sample(self, delta: Delta, snapshot_table: str, limit: int) -> dict[str, list[dict[str, Any]]]:
        return sample_rows(lambda sql: self.conn.execute(sql).fetchall(), delta, snapshot_table, limit)


class DuckDBWarehouse(Warehouse):
    DIALECT: ClassVar[str] = "duckdb"
    SUPPORTS_TRANSACTIONS: ClassVar[bool] = True
    SUPPORTS_MERGE: ClassVar[bool] = False
    SUPPORTS_TEMP_TABLES: ClassVar[bool] = True
    SUPPORTS_ARROW: ClassVar[bool] = True
    PUSHDOWN: ClassVar[bool] = False  # the diff runs here anyway: the state file is attached to this engine
    TESTED_LIVE: ClassVar[bool] = True

    def __init__(self, config: DuckDBWarehouseConfig, root: Path) -> None:
        self.config = config
        self.root = root
        self.path = Path(config.path) if Path(config.path).is_absolute() else root / config.path

    def alias(self) -> str:
        stem = re.sub(r"\W", "_", self.path.stem) or "warehouse"
        return "warehouse" if stem.lower() in _RESERVED_ALIASES else stem

    @contextmanager
    def session(self) -> Iterator[DuckDBSession]:
        conn = duckdb.connect(":memory:")
        session = DuckDBSession(conn, self.root)
        try:
            conn.execute("SET file_search_path = ?", [str(self.root)])
            tmp = self.root / ".retl" / "tmp"
            tmp.mkdir(parents=True, exist_ok=True)
            conn.execute("SET temp_directory = ?", [str(tmp)])
            conn.execute("SET preserve_insertion_order = false")
            if self.config.memory_limit:
                conn.execute("SET memory_limit = ?", [self.config.memory_limit])
            if self.config.threads:
                conn.execute(f"SET threads = {int(self.config.threads)}")
            self._ensure_exists()
            try:
                conn.execute(f"ATTACH ? AS {quote(self.alias())} (READ_ONLY)", [str(self.path)])
            except duckdb.Error as exc:
                if is_lock_error(exc):
                    raise WarehouseLockedError(
                        f"the warehouse {self.path} is locked by another process: {_clean(exc)}",
                        hint="reverse_etl only reads it; run again when the other writer (dbt, a notebook) is done",
                    ) from None
                raise
            conn.execute(f"USE {quote(self.alias())}")
            yield session
        finally:
            session.close()

    def _ensure_exists(self) -> None:
        if self.path.exists():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        duckdb.connect(str(self.path)).close()


def _delta_query(delta: Delta) -> str:
    names = ", ".join(quote(n) for n in delta.columns.all)
    return (
        f"SELECT __retl_seq, __retl_action, {names} FROM {delta.table} "
        "WHERE __retl_seq BETWEEN ? AND ? ORDER BY __retl_seq"
    )


def _clean(exc: Exception) -> str:
    return str(exc).strip().replace("\n", " ")


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
