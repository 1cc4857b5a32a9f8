"""PostgreSQL through psycopg 3: models as temp views, the diff and the state in the database.

Session settings pin what the row hash reads (``CAST(... AS TEXT)``): UTC, ISO dates and the
shortest exact float text, so the same value hashes the same from any client. A run holds an
advisory lock on its state schema, as a DuckDB state file is held by one process, so a second
run waits its turn (StateBusyError) instead of sending the same delta twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any, ClassVar

from reverse_etl.config.warehouses import PostgresWarehouseConfig
from reverse_etl.errors import WarehouseError
from reverse_etl.warehouse.locking import AdvisoryLock, StateLock
from reverse_etl.warehouse.sql import SqlSession, SqlWarehouse, clean_error, lit


class PostgresWarehouse(SqlWarehouse):
    DIALECT: ClassVar[str] = "postgres"
    SUPPORTS_TRANSACTIONS: ClassVar[bool] = True
    SUPPORTS_MERGE: ClassVar[bool] = True  # PostgreSQL >= 15
    SUPPORTS_TEMP_TABLES: ClassVar[bool] = True
    SUPPORTS_ARROW: ClassVar[bool] = False  # psycopg returns rows; batches are built from them
    SUPPORTS_STATE_LOCK: ClassVar[bool] = True
    TRANSACTIONAL_DDL: ClassVar[bool] = True
    TESTED_LIVE: ClassVar[bool] = True
    HASH_ALGORITHM: ClassVar[str] = "md5-text/postgres/1"
    # The row's text (pinned by the session settings below), hashed to 64 bits; sum() is numeric.
    ROW_HASH_SUM: ClassVar[str] = "SUM(hashtextextended(CAST({row} AS TEXT), 0))"
    MODEL_VIEW: ClassVar[str] = "CREATE OR REPLACE TEMPORARY VIEW {name} AS {query}"

    config: PostgresWarehouseConfig

    def connect(self) -> Any:
        try:
            import psycopg
        except ImportError:  # pragma: no cover - depends on the install
            raise WarehouseError(
                "the postgres warehouse needs psycopg", hint="pip install 'reverse_etl[postgres]'"
            ) from None
        c = self.config
        params: dict[str, Any] = {
            "host": c.host, "port": c.port, "dbname": c.dbname, "user": c.user,
            "connect_timeout": c.connect_timeout, "application_name": "reverse_etl",
        }
        if c.password is not None:
            params["password"] = c.password.get_secret_value()
        if c.sslmode:
            params["sslmode"] = c.sslmode
        try:
            return psycopg.connect(autocommit=True, **{k: v for k, v in params.items() if v is not None})
        except psycopg.Error as exc:
            raise WarehouseError(
                f"cannot connect to PostgreSQL at {c.host}:{c.port} (database {c.dbname!r}): {clean_error(exc)}",
                hint="check host, port, user and password of the target's warehouse",
            ) from None

    def on_connect(self, session: SqlSession) -> None:
        for statement in (
            f"SET search_path TO {session.ident(self.config.schema_)}, public",
            "SET TIME ZONE 'UTC'",
            "SET DateStyle TO 'ISO, YMD'",
            "SET IntervalStyle TO 'postgres'",
            "SET extra_float_digits TO 1",
        ):
            session.run_native(statement)

    def describe(self, session: SqlSession, relation: str) -> dict[str, str]:
        rows = session.run_native(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute AS a "
            f"WHERE a.attrelid = CAST({lit(session.native_name(relation))} AS regclass) AND a.attnum > 0 "
            "AND NOT a.attisdropped ORDER BY a.attnum"
        )
        return {str(r[0]): str(r[1]) for r in rows}

    def state_lock(self, session: SqlSession, schema: str) -> StateLock:
        # Session-level: released when the run's connection closes, however the process ends.
        return AdvisoryLock(session, schema)

    def after_scratch(self, session: SqlSession, name: str, index: str | None) -> None:
        # Temp tables are never analyzed by autovacuum; without statistics the planner guesses
        # badly for the joins and range reads that follow.
        if index:
            session.execute(f'CREATE INDEX ON {name} ("{index}")')
        session.execute(f"ANALYZE {name}")

    def after_snapshot(self, session: SqlSession, table: str, key: list[str]) -> None:
        # Acks delete and insert by key: an index keeps each chunk's advance proportional to the
        # chunk, not to the snapshot; unique, so a broken invariant fails loudly.
        cols = ", ".join(session.ident(k) for k in key)
        session.run_native(f"CREATE UNIQUE INDEX ON {session.native_name(table)} ({cols})")

    def after_held(self, session: SqlSession, table: str, key: list[str]) -> None:
        # Held rows are probed (hold's NOT EXISTS) and deleted (acks) by key, chunk by chunk.
        # Named from the table, so the statement can be repeated; a hash keeps it under 63 bytes.
        name = "retl_held_" + hashlib.sha256(table.encode()).hexdigest()[:16]
        cols = ", ".join(session.ident(k) for k in key)
        session.run_native(f"CREATE UNIQUE INDEX IF NOT EXISTS {session.ident(name)} ON {session.native_name(table)} ({cols})")

    def fetch_arrow(self, session: SqlSession, sql: str) -> Iterator[Any]:
        """Record batches through a server-side cursor, so a large result is never held whole."""
        import pyarrow as pa

        conn = session.dbapi
        with conn.transaction(), conn.cursor(name="retl_fetch", binary=True) as cursor:
            cursor.itersize = self.config.fetch_rows
            cursor.execute(sql)
            names = [d[0] for d in cursor.description or []]
            while rows := cursor.fetchmany(self.config.fetch_rows):
                yield pa.RecordBatch.from_arrays(
                    [pa.array([r[i] for r in rows]) for i in range(len(names))], names=names
                )
