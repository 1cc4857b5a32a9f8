"""The warehouse interface: open a session, build models in it, diff there, read the delta.

One adapter class per engine; what differs between engines is said by class constants
(sqlmesh's engine-adapter pattern), not by ``if engine == ...`` chains:

``DIALECT``                 sqlglot dialect that models are compiled to and generated SQL is written in
``SUPPORTS_TRANSACTIONS``   a snapshot advance (two deletes and an insert) commits atomically
``SUPPORTS_MERGE``          the engine has MERGE (recorded; the advance uses DELETE + INSERT, see diff.pushdown)
``SUPPORTS_TEMP_TABLES``    session-scoped tables hold the join and the delta; else ``TEMP_TABLE`` says how
``SUPPORTS_ARROW``          the driver hands results over as Arrow (fetching a pulled model, a delta chunk)
``PUSHDOWN``                snapshots can live in the engine so the diff runs there (``state: warehouse``)

A session is one connection for the length of a run. The runner asks it for its diff engine
(:meth:`WarehouseSession.differ`), its state store (:meth:`WarehouseSession.open_state`), for
delta rows (:meth:`WarehouseSession.fetch_delta`) and preview samples; it never sends SQL of its
own, so DuckDB and the pushdown engines run the same runner code.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import duckdb

from reverse_etl.modeling import Model

if TYPE_CHECKING:
    import pyarrow as pa

    from reverse_etl.config.profiles import StateConfig
    from reverse_etl.diff.engine import Delta, Differ
    from reverse_etl.state.base import StateStore


class WarehouseSession(ABC):
    """One open connection for the length of a run.

    ``conn`` is the local DuckDB engine of DuckDB-backed sessions (the DuckDB warehouse, and
    ``state: local`` over a remote warehouse); a pushdown session has none and raises on it.
    """

    conn: duckdb.DuckDBPyConnection
    dialect: str = "duckdb"  # the sqlglot dialect of the engine this session sends SQL to

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Rows of one read-only statement written in this session's dialect."""
        return self.conn.execute(sql).fetchall()

    def query_native(self, sql: str) -> list[tuple[Any, ...]]:
        """Rows of one statement written in the engine's own dialect, sent as it is."""
        return self.conn.execute(sql).fetchall()

    def iter_native(self, sql: str, size: int) -> Iterator[list[tuple[Any, ...]]]:
        """The rows of a native statement in batches of ``size``."""
        cursor = self.conn.execute(sql)
        while batch := cursor.fetchmany(size):
            yield batch

    def reset(self) -> None:  # noqa: B027 - DuckDB needs nothing; drivers with failed transactions do
        """After a failed statement: leave the connection usable for the next one."""

    def check_state_lock(self) -> None:  # noqa: B027 - DuckDB's lock is its file's; only leases can be lost
        """Raise StateBusyError if this run's lock on the state was taken over (before each chunk)."""

    def models_sql(self, sql: str) -> str:
        """User SQL in the engine's dialect that reads built models by name, made runnable here."""
        return sql

    def row_hash_sum(self, row: str) -> str:
        """An order-independent sum of the hashes of the rows of alias ``row`` (native SQL)."""
        return f"sum(hash({row}))"

    @abstractmethod
    def build(self, models: list[Model]) -> None:
        """Define ``models`` (in dependency order) so later SQL can read them by name."""

    @abstractmethod
    def columns(self, model: str) -> dict[str, str]:
        """Column name -> SQL type (in the diff engine's dialect) of a built model."""

    @abstractmethod
    def relation(self, model: str, columns: list[str]) -> str:
        """A quoted relation the diff can read ``columns`` of ``model`` from."""

    @abstractmethod
    def open_state(self, config: StateConfig, root: Path) -> StateStore:
        """The state store this session diffs against (a local file, or the warehouse's schema)."""

    @abstractmethod
    def differ(self) -> Differ:
        """The diff engine that runs where the snapshots are."""

    @abstractmethod
    def fetch_delta(self, delta: Delta, lo: int, hi: int) -> list[tuple[Any, ...]]:
        """Delta rows ``lo..hi`` in send order: ``(seq, action, *delta.columns.all)``."""

    def fetch_delta_arrow(self, delta: Delta, lo: int, hi: int) -> pa.Table:
        """Delta rows ``lo..hi`` as Arrow: ``__retl_seq``, ``__retl_action``, then ``delta.columns.all``.

        For columnar writers. Engines that hand results over as Arrow override this; here the
        rows are converted.
        """
        import pyarrow as pa

        names = ["__retl_seq", "__retl_action", *delta.columns.all]
        rows = self.fetch_delta(delta, lo, hi)
        return pa.table({n: [r[i] for r in rows] for i, n in enumerate(names)})

    @abstractmethod
    def sample(self, delta: Delta, snapshot_table: str, limit: int) -> dict[str, list[dict[str, Any]]]:
        """Up to ``limit`` preview rows per kind (see :func:`reverse_etl.plan.sample_rows`)."""


class Warehouse(ABC):
    """An engine adapter. Subclasses set the class constants and open sessions."""

    DIALECT: ClassVar[str]
    SUPPORTS_TRANSACTIONS: ClassVar[bool] = True
    SUPPORTS_MERGE: ClassVar[bool] = False
    SUPPORTS_TEMP_TABLES: ClassVar[bool] = True
    SUPPORTS_ARROW: ClassVar[bool] = False
    PUSHDOWN: ClassVar[bool] = False
    # Whether this adapter's test suite runs against a live engine here (docs/warehouses.md).
    TESTED_LIVE: ClassVar[bool] = False

    @abstractmethod
    def session(self) -> AbstractContextManager[WarehouseSession]:
        """Open the warehouse for one run; closed (and its locks released) on exit."""

    def iter_tables(self) -> Iterator[str]:  # pragma: no cover - optional
        return iter(())
