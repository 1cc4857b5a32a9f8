"""The DuckDB warehouse: a file opened read-only, models as temp views in an in-memory engine.

reverse_etl never writes the user's warehouse: the file is attached READ_ONLY for the length
of one run, so dbt-duckdb or a notebook can write it between runs. Models become TEMP views
(each model's SELECT runs where it is read: once for the primary-key check, once for the diff);
large intermediate results spill to ``.retl/tmp``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

import duckdb

from reverse_etl.config.profiles import DuckDBWarehouseConfig
from reverse_etl.errors import ModelError, WarehouseLockedError
from reverse_etl.modeling import Model
from reverse_etl.modeling.model import quote
from reverse_etl.warehouse.base import Warehouse, WarehouseSession

_RESERVED_ALIASES = {"memory", "temp", "system", "main", "retl_state"}


def is_lock_error(exc: Exception) -> bool:
    text = str(exc)
    return "lock" in text.lower() and ("conflicting" in text.lower() or "could not set lock" in text.lower())


class DuckDBSession(WarehouseSession):
    def __init__(self, conn: duckdb.DuckDBPyConnection, root: Path) -> None:
        self.conn = conn
        self.root = root

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


class DuckDBWarehouse(Warehouse):
    DIALECT: ClassVar[str] = "duckdb"

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
            yield DuckDBSession(conn, self.root)
        finally:
            conn.close()

    def _ensure_exists(self) -> None:
        if self.path.exists():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        duckdb.connect(str(self.path)).close()


def _clean(exc: Exception) -> str:
    return str(exc).strip().replace("\n", " ")


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
