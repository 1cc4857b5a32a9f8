"""Pushdown warehouses: models, diff, snapshots and run history all in the user's warehouse.

Every statement reverse_etl generates for such an engine is written once in a canonical SQL
(PostgreSQL's, with every identifier quoted by sqlglot and every value a sqlglot literal), then
parsed and generated for the engine's dialect by sqlglot (:meth:`SqlSession.native`). Models are
compiled to the engine's dialect when the project loads and run as they are. What differs
between engines is said by the adapter's class constants (see :mod:`reverse_etl.warehouse.base`)
and a few small hooks (how to describe a view, create a scratch table, lock the state).
"""

from __future__ import annotations

import os
import re
import socket
import time
import uuid
from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import sqlglot
from sqlglot import exp

from reverse_etl.config.profiles import StateConfig
from reverse_etl.diff.engine import Delta, Differ
from reverse_etl.errors import ModelError, RetlError
from reverse_etl.modeling import Model
from reverse_etl.plan.plan import sample_rows
from reverse_etl.state.base import StateStore
from reverse_etl.warehouse.base import Warehouse, WarehouseSession

if TYPE_CHECKING:
    from reverse_etl.warehouse.locking import StateLock

CANONICAL = "postgres"


def q(*parts: str) -> str:
    """A (qualified) identifier of the canonical SQL, every part quoted."""
    return ".".join(exp.to_identifier(p, quoted=True).sql(CANONICAL) for p in parts)


def lit(value: Any) -> str:
    """A literal of the canonical SQL; strings are escaped by sqlglot, never formatted in."""
    return exp.convert(value).sql(CANONICAL)


def text_hash(columns: Sequence[str], alias: str | None) -> str:
    """A stable row hash in the canonical SQL: md5 over a text encoding of ``columns``.

    Each value becomes ``<length>:<text>``, NULL becomes ``~``, joined by ``|``: the length
    prefix keeps ('a|', 'b') apart from ('a', '|b'), and NULL apart from '' (``0:``). The text
    of a value is the engine's own CAST(... AS TEXT), so the hash is stable per engine (the
    adapter's ``HASH_ALGORITHM`` names it) and recomputable from the stored snapshot values.
    """
    if not columns:
        return "md5('')"
    parts = []
    for c in columns:
        ref = f"{alias}.{q(c)}" if alias else q(c)
        text = f"CAST({ref} AS TEXT)"
        parts.append(f"COALESCE(CAST(LENGTH({text}) AS TEXT) || ':' || {text}, '~')")
    return "md5(" + " || '|' || ".join(parts) + ")"


def clean_error(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:500]


class SqlWarehouse(Warehouse):
    """An engine reached through a DB-API style connection, diffing in place."""

    PUSHDOWN: ClassVar[bool] = True
    HASH_ALGORITHM: ClassVar[str] = "md5-text/1"
    # Takes the model's (native) SQL; the name is quoted for the engine.
    MODEL_VIEW: ClassVar[str] = "CREATE TEMPORARY VIEW {name} AS {query}"
    # Canonical statement that materializes a scratch table (join, delta) for the session.
    TEMP_TABLE: ClassVar[str] = "CREATE TEMPORARY TABLE {name} AS {query}"
    # Engines whose scratch tables are not session-scoped put them in the state schema, named per run.
    TEMP_IN_STATE_SCHEMA: ClassVar[bool] = False
    # Engines without temporary views create model views in the state schema, named per run.
    MODELS_IN_STATE_SCHEMA: ClassVar[bool] = False
    # DDL can share a transaction with DML (PostgreSQL). Snowflake commits at each DDL statement and
    # BigQuery refuses DDL inside a transaction: there, creating tables is not wrapped.
    TRANSACTIONAL_DDL: ClassVar[bool] = False
    # One cross-process lock on the state for the length of a run (as the DuckDB file has); which
    # kind is said by state_lock().
    SUPPORTS_STATE_LOCK: ClassVar[bool] = True
    # Tables without DELETE/UPDATE (Parquet on vanilla Spark), or without multi-statement
    # transactions (Databricks): snapshots and state tables are append-only logs, every row versioned
    # (``__retl_v``, ``__retl_gone``), read as the newest version per key; one acknowledgement is one
    # INSERT, which commits atomically on its own.
    APPEND_ONLY: ClassVar[bool] = False
    # Scratch results that are views over each other (Spark's cached temp views): dropped only at
    # the end of the run, newest first, and named per run (the engine session may outlive the run).
    DEFER_SCRATCH_DROP: ClassVar[bool] = False
    SUPPORTS_DROP_COLUMN: ClassVar[bool] = True
    # Rows per fetch when a result is streamed (pulling a model for state: local).
    FETCH_ROWS: ClassVar[int] = 50_000
    # The order-independent sum of per-row hashes that ``when_changed`` fingerprints a warehouse
    # table with, in the engine's dialect; ``{row}`` is the table's (quoted) alias. Summed as a
    # wide number: a 64-bit sum would overflow (and fail on engines that check).
    ROW_HASH_SUM: ClassVar[str]

    def __init__(self, config: Any, root: Path) -> None:
        self.config = config
        self.root = root

    @abstractmethod
    def connect(self) -> Any:
        """A DB-API 2 connection in autocommit mode (transactions are explicit)."""

    @contextmanager
    def session(self) -> Iterator[SqlSession]:
        connection = self.connect()
        try:
            session = SqlSession(self, connection)
            session.heartbeat = lambda: SqlSession(self, self.connect(), owner=session.owner)
            self.on_connect(session)
            try:
                yield session
            finally:
                session.cleanup()
        finally:
            try:
                connection.close()
            except Exception:  # closing a broken connection must not hide the real error
                pass

    # --- hooks ------------------------------------------------------------------------
    def on_connect(self, session: SqlSession) -> None:
        """Session settings (search path, time zone ...)."""

    @abstractmethod
    def describe(self, session: SqlSession, relation: str) -> dict[str, str]:
        """Column -> native type of a view or table (``relation`` canonical, qualified)."""

    def state_lock(self, session: SqlSession, schema: str) -> StateLock:
        """The run-long lock on the state in ``schema`` (see :mod:`reverse_etl.warehouse.locking`):
        a lease row claimed by MERGE, unless the engine has something better."""
        from reverse_etl.warehouse.locking import LeaseLock

        return LeaseLock(session, schema, session.lock_lease_s, session.heartbeat)

    def overwrite(self, session: SqlSession, table: str, source: str) -> None:
        """Replace every row of ``table`` with the rows of table ``source`` (same columns, same order)."""
        with session.transaction():
            session.execute(f"DELETE FROM {table} WHERE TRUE")
            session.execute(f"INSERT INTO {table} SELECT * FROM {source}")

    def begin(self, session: SqlSession) -> None:
        session.run_native("BEGIN")

    def commit(self, session: SqlSession) -> None:
        session.run_native("COMMIT")

    def rollback(self, session: SqlSession) -> None:
        session.run_native("ROLLBACK")

    def after_scratch(self, session: SqlSession, name: str, index: str | None) -> None:
        """Called after a scratch table is filled (statistics, an index on ``index``)."""

    def after_snapshot(self, session: SqlSession, table: str, key: list[str]) -> None:
        """Called once when a snapshot table is created (an index on its key)."""

    def after_held(self, session: SqlSession, table: str, key: list[str]) -> None:
        """Called whenever a snapshot's maybe-held table is made sure of (an index on its key, if
        not there yet)."""

    def create_scratch(self, session: SqlSession, name: str, query: str) -> None:
        """Materialize the canonical ``query`` as scratch table ``name``."""
        session.execute(self.TEMP_TABLE.format(name=name, query=query))

    def drop_scratch(self, session: SqlSession, name: str) -> None:
        session.execute(f"DROP TABLE IF EXISTS {name}")

    def add_column(self, session: SqlSession, table: str, column: str, sql_type: str) -> None:
        """Add a column of a native type to a snapshot table."""
        session.run_native(f"ALTER TABLE {session.native_name(table)} ADD COLUMN {session.ident(column)} {sql_type}")

    def fetch_arrow(self, session: SqlSession, sql: str) -> Iterator[Any]:
        """Record batches of a native SELECT; drivers without Arrow build them from row batches."""
        import pyarrow as pa

        cursor = session.dbapi.cursor()
        try:
            cursor.execute(sql)
            names = [d[0] for d in cursor.description]
            while rows := cursor.fetchmany(self.FETCH_ROWS):
                yield pa.RecordBatch.from_arrays(
                    [pa.array([r[i] for r in rows]) for i in range(len(names))], names=names
                )
        finally:
            cursor.close()


class SqlSession(WarehouseSession):
    """One connection to a pushdown warehouse for the length of a run."""

    def __init__(self, warehouse: SqlWarehouse, connection: Any, *, owner: str | None = None) -> None:
        self.warehouse = warehouse
        self.dbapi = connection
        self.dialect = warehouse.DIALECT
        self.state_schema = "_retl"
        self.statements: list[str] | None = None  # set to a list to record every statement (tests)
        # Statements held for one script (engines whose transactions are scripts); see run_native.
        self.buffer: list[str] | None = None
        self.token = uuid.uuid4().hex[:8]  # names this run's objects where they are not session-scoped
        # Who this run is, in a state lock: host, pid, token.
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{self.token}"
        # Opens another session for a lock's heartbeat (set by SqlWarehouse.session); None: no heartbeat.
        self.heartbeat: Callable[[], SqlSession] | None = None
        self.state_lock: StateLock | None = None  # taken by open_state, released by cleanup
        self.lock_lease_s = StateConfig().lock_lease_s  # the profile's state.lock_lease, set by open_state
        self._scratch = 0
        self._in_transaction = False
        self._models: dict[str, str] = {}
        self._created: list[tuple[str, str]] = []
        self._deferred: list[str] = []
        self._version = 0
        self.clock = time.time_ns  # versions of append-only rows (tests fix it)

    @property
    def conn(self) -> Any:  # type: ignore[override]
        raise RetlError(f"the {self.dialect} warehouse has no local DuckDB engine; use session.query()")

    # --- running SQL --------------------------------------------------------------------
    def native(self, canonical: str) -> str:
        """The canonical statement in this engine's dialect."""
        if self.dialect == CANONICAL:
            # Parsed and generated all the same, so every engine's SQL goes through one path.
            return sqlglot.transpile(canonical, read=CANONICAL, write=CANONICAL)[0]
        return sqlglot.transpile(canonical, read=CANONICAL, write=self.dialect)[0]

    @contextmanager
    def _executed(self, sql: str) -> Iterator[Any]:
        """A cursor that ran ``sql`` (recorded when statements are kept), closed afterwards."""
        if self.statements is not None:
            self.statements.append(sql)
        cursor = self.dbapi.cursor()
        try:
            cursor.execute(sql)
            yield cursor
        finally:
            cursor.close()

    def run_native(self, sql: str) -> list[tuple[Any, ...]]:
        if self.buffer is not None:
            self.buffer.append(sql)  # a statement of a transaction script: it returns no rows
            return []
        with self._executed(sql) as cursor:
            return [] if cursor.description is None else [tuple(r) for r in cursor.fetchall()]

    def ident(self, name: str) -> str:
        """``name`` as a quoted identifier of this engine."""
        return exp.to_identifier(name, quoted=True).sql(self.dialect)

    def native_name(self, canonical: str) -> str:
        """A canonical (qualified, quoted) name as this engine writes it."""
        return sqlglot.parse_one(canonical, read=CANONICAL, into=exp.Table).sql(self.dialect)

    def reset(self) -> None:
        """After a failed statement: end a failed transaction the driver may have left open."""
        try:
            self.dbapi.rollback()
        except Exception:
            pass

    def execute(self, canonical: str) -> None:
        self.run_native(self.native(canonical))

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        return self.run_native(self.native(sql))

    def query_native(self, sql: str) -> list[tuple[Any, ...]]:
        return self.run_native(sql)

    def iter_native(self, sql: str, size: int) -> Iterator[list[tuple[Any, ...]]]:
        with self._executed(sql) as cursor:
            if cursor.description is None:
                return
            while batch := cursor.fetchmany(size):
                yield [tuple(r) for r in batch]

    def models_sql(self, sql: str) -> str:
        return self._point_at_models(sql) if self.warehouse.MODELS_IN_STATE_SCHEMA else sql

    def row_hash_sum(self, row: str) -> str:
        return self.warehouse.ROW_HASH_SUM.format(row=row)

    def scalar(self, canonical: str) -> Any:
        rows = self.query(canonical)
        return rows[0][0] if rows else None

    @contextmanager
    def transaction(self, *, ddl: bool = False) -> Iterator[None]:
        """Statements inside commit together (or, on an error, not at all).

        ``ddl``: the block creates tables; on engines without transactional DDL it runs unwrapped
        (each statement is idempotent or checked on the next run).
        """
        if self._in_transaction or not self.warehouse.SUPPORTS_TRANSACTIONS or (ddl and not self.warehouse.TRANSACTIONAL_DDL):
            yield
            return
        self.warehouse.begin(self)
        self._in_transaction = True
        try:
            yield
        except BaseException:
            self._in_transaction = False
            self.warehouse.rollback(self)
            raise
        self._in_transaction = False
        self.warehouse.commit(self)

    def scratch(self, prefix: str, query: str, *, index: str | None = None, name: str | None = None) -> str:
        """Materialize the canonical ``query`` as a scratch table for this run; its canonical name
        (``name``: that one, e.g. the held twin of a scratch snapshot)."""
        self._scratch += 1
        bare = f"__retl_{prefix}_{self._scratch}"
        if self.warehouse.TEMP_IN_STATE_SCHEMA or self.warehouse.DEFER_SCRATCH_DROP:
            bare = f"__retl_{self.token}_{prefix}_{self._scratch}"
        if name is None:
            name = q(self.state_schema, bare) if self.warehouse.TEMP_IN_STATE_SCHEMA else q(bare)
        self.warehouse.drop_scratch(self, name)
        self.warehouse.create_scratch(self, name, query)
        if self.warehouse.DEFER_SCRATCH_DROP:
            self._deferred.append(name)
        if self.warehouse.TEMP_IN_STATE_SCHEMA:
            self._created.append(("TABLE", name))
        self.warehouse.after_scratch(self, name, index)
        return name

    def drop(self, name: str) -> None:
        if self.warehouse.DEFER_SCRATCH_DROP:
            return  # later scratch results may still read it; cleanup() drops it
        self.warehouse.drop_scratch(self, name)
        self._created = [c for c in self._created if c != ("TABLE", name)]

    def cleanup(self) -> None:
        """Drop what this run created outside the session's own scope (views and tables in the state
        schema), then give the state lock back."""
        try:
            self._drop_created()
        finally:
            if self.state_lock is not None:
                self.state_lock.release()
                self.state_lock = None

    def _drop_created(self) -> None:
        for kind, name in reversed(self._created):
            try:
                self.execute(f"DROP {kind} IF EXISTS {name}")
            except Exception:  # best effort: scratch tables also expire on their own
                self.reset()
        self._created = []
        for name in reversed(self._deferred):
            try:
                self.warehouse.drop_scratch(self, name)
            except Exception:  # best effort: they end with the engine's session anyway
                self.reset()
        self._deferred = []

    # --- the WarehouseSession interface -----------------------------------------------------
    def model_relation(self, model: str) -> str:
        """The canonical name a built model is read by.

        Models read each other by unquoted names, which the engine folds (Snowflake to upper
        case, PostgreSQL to lower case): the view is named as that folding reads it.
        """
        if model in self._models:
            return self._models[model]
        folded = sqlglot.Dialect.get_or_raise(self.dialect).normalize_identifier(exp.to_identifier(model))
        return q(folded.name)

    def build(self, models: list[Model]) -> None:
        for model in models:
            sql = model.sql
            if self.warehouse.MODELS_IN_STATE_SCHEMA:
                self._models[model.name] = q(self.state_schema, f"__retl_{self.token}_model_{safe_name(model.name)}")
                self._created.append(("VIEW", self._models[model.name]))
                sql = self._point_at_models(sql)
            name = self.native_name(self.model_relation(model.name))
            try:
                self.run_native(self.warehouse.MODEL_VIEW.format(name=name, query=sql))
            except Exception as exc:
                if isinstance(exc, RetlError):
                    raise
                raise ModelError(f"{model.path.name}: model {model.name!r} failed in {self.dialect}: {clean_error(exc)}") from None

    def _point_at_models(self, sql: str) -> str:
        """``sql`` (native) with its reads of models pointed at their views in the state schema."""
        tree = sqlglot.parse_one(sql, read=self.dialect)
        ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
        for table in list(tree.find_all(exp.Table)):
            if not table.db and table.name in self._models and table.name not in ctes:
                target = sqlglot.parse_one(self._models[table.name], read=CANONICAL, into=exp.Table)
                if table.alias:
                    target.set("alias", table.args.get("alias"))
                table.replace(target)
        return tree.sql(dialect=self.dialect)

    def columns(self, model: str) -> dict[str, str]:
        return self.warehouse.describe(self, self.model_relation(model))

    def relation(self, model: str, columns: list[str]) -> str:
        return self.model_relation(model)

    def check_state_lock(self) -> None:
        if self.state_lock is not None:
            self.state_lock.check(f"schema {self.state_schema!r}")

    def open_state(self, config: StateConfig, root: Path) -> StateStore:
        from reverse_etl.state.warehouse import SqlStateStore

        self.state_schema = config.schema_
        self.lock_lease_s = config.lock_lease_s
        store = SqlStateStore.open(self, config.schema_)
        store.compact_ratio, store.compact_min_rows = config.compact_ratio, config.compact_min_rows
        return store

    def differ(self) -> Differ:
        from reverse_etl.diff.pushdown import SqlDiffer

        return SqlDiffer(self)

    def _delta_query(self, delta: Delta, lo: int, hi: int) -> str:
        names = ", ".join(q(n) for n in delta.columns.all)
        return (
            f'SELECT "__retl_seq", "__retl_action", {names} FROM {delta.table} '
            f'WHERE "__retl_seq" BETWEEN {int(lo)} AND {int(hi)} ORDER BY "__retl_seq"'
        )

    def fetch_delta(self, delta: Delta, lo: int, hi: int) -> list[tuple[Any, ...]]:
        return self.query(self._delta_query(delta, lo, hi))

    def fetch_delta_arrow(self, delta: Delta, lo: int, hi: int) -> Any:
        import pyarrow as pa

        if not self.warehouse.SUPPORTS_ARROW:
            return super().fetch_delta_arrow(delta, lo, hi)
        batches = list(self.warehouse.fetch_arrow(self, self.native(self._delta_query(delta, lo, hi))))
        if not batches:
            return super().fetch_delta_arrow(delta, lo, hi)  # an empty range: the schema from names
        names = ["__retl_seq", "__retl_action", *delta.columns.all]
        return pa.Table.from_batches(batches).rename_columns(names)

    def sample(self, delta: Delta, snapshot_table: str, limit: int) -> dict[str, list[dict[str, Any]]]:
        return sample_rows(self.query, delta, self.current(snapshot_table, delta.columns.key), limit)

    def row_hash(self, columns: Sequence[str], alias: str | None) -> str:
        return text_hash(columns, alias)

    # --- append-only tables (APPEND_ONLY engines) -----------------------------------------
    def current(self, table: str, key: Sequence[str]) -> str:
        """A relation of the rows ``table`` holds now: the table itself, or on an append-only
        engine the newest version of each key that is not a tombstone."""
        if not self.warehouse.APPEND_ONLY:
            return table
        keys = ", ".join(q(k) for k in key)
        return (
            f'(SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY {keys} ORDER BY "__retl_v" DESC) AS "__retl_rn" '
            f'FROM {table}) AS "__retl_log" WHERE "__retl_rn" = 1 AND NOT "__retl_gone")'
        )

    def next_version(self) -> int:
        """A version for rows written now: microseconds x 4 (room for three steps of one ack),
        increasing within the process; across processes it follows the clock."""
        self._version = max(self.clock() // 1000 * 4, self._version + 4)
        return self._version


_SAFE = re.compile(r"[^A-Za-z0-9_]")


def safe_name(text: str) -> str:
    return _SAFE.sub("_", text)
