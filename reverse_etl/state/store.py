"""The state store, a DuckDB file (``.retl/state.duckdb``) attached to the run's engine.

Snapshots live here, one table per sync: the key columns, the mapped column values and a row
hash. A snapshot is what the destination is known to hold; it only ever advances by applying
the delta rows a destination acknowledged (see :mod:`reverse_etl.diff.engine`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from reverse_etl.diff.engine import held_table
from reverse_etl.errors import StateBusyError, StateError
from reverse_etl.modeling.model import quote
from reverse_etl.state.base import (
    ENGINE_VERSION,
    RUN_COLUMNS,
    RowError,
    RunRecord,
    SnapshotInfo,
    StateStore,
    now,
    reset_reason,
)
from reverse_etl.state.migrations import LATEST, MIGRATIONS

__all__ = [
    "CATALOG", "ENGINE_VERSION", "DuckDBStateStore", "RowError", "RunRecord", "SnapshotInfo", "StateStore",
    "hash_algorithm", "now",
]

CATALOG = "retl_state"
log = logging.getLogger(__name__)


def hash_algorithm() -> str:
    """Names the row-hash function; DuckDB's hash() may change between DuckDB versions."""
    return f"duckdb-hash-struct/{duckdb.__version__}"


_RUN_COLUMNS = ", ".join(RUN_COLUMNS)


class DuckDBStateStore(StateStore):
    """Reads and writes ``retl_state`` on a DuckDB connection that has it attached."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, path: Path) -> None:
        self.conn = conn
        self.path = path

    # --- opening -----------------------------------------------------------------------
    @staticmethod
    def attach(conn: duckdb.DuckDBPyConnection, path: Path, *, read_only: bool = False) -> DuckDBStateStore:
        """Attach the state file to ``conn`` (creating it owner-only), migrate it, return the store."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not path.exists()
        try:
            mode = " (READ_ONLY)" if read_only and not fresh else ""
            conn.execute(f"ATTACH ? AS {CATALOG}{mode}", [str(path)])
        except duckdb.Error as exc:
            text = str(exc)
            if "lock" in text.lower():
                raise StateBusyError(
                    f"the state store {path} is in use by another retl process",
                    hint="wait for the other run to finish (retl runs shows what is running)",
                ) from None
            raise StateError(f"cannot open the state store {path}: {text.strip()}") from None
        if fresh:
            os.chmod(path, 0o600)
        store = DuckDBStateStore(conn, path)
        if not (read_only and not fresh):
            store.migrate()
            store._close_orphans()
        else:
            store._check_version()
        return store

    @staticmethod
    @contextmanager
    def open(path: Path, *, read_only: bool = False) -> Iterator[DuckDBStateStore]:
        """A standalone connection to the state file (``retl runs``)."""
        conn = duckdb.connect(":memory:")
        try:
            yield DuckDBStateStore.attach(conn, path, read_only=read_only)
        finally:
            conn.close()

    def _version(self) -> int:
        # Asked directly: listing duckdb_tables() walks every table of every attached database,
        # the user's warehouse included.
        try:
            row = self.conn.execute(f"SELECT max(version) FROM {CATALOG}._retl_migrations").fetchone()
        except duckdb.CatalogException:
            return 0  # a new state file: no migration applied yet
        return int(row[0] or 0) if row else 0

    def _check_version(self) -> None:
        version = self._version()
        if version > LATEST:
            raise StateError(
                f"the state store {self.path} has schema version {version}, newer than this reverse_etl knows ({LATEST})",
                hint="upgrade reverse_etl; never downgrade a state store",
            )

    def migrate(self) -> None:
        self._check_version()
        self.conn.execute(
            f"CREATE TABLE IF NOT EXISTS {CATALOG}._retl_migrations "
            "(version INTEGER PRIMARY KEY, description VARCHAR, applied_at TIMESTAMP)"
        )
        current = self._version()
        for version, description, statements in MIGRATIONS:
            if version <= current:
                continue
            self.conn.execute("BEGIN TRANSACTION")
            try:
                for statement in statements:
                    self.conn.execute(statement.format(c=CATALOG))
                self.conn.execute(
                    f"INSERT INTO {CATALOG}._retl_migrations VALUES (?, ?, ?)", [version, description, now()]
                )
                self.conn.execute("COMMIT")
            except Exception:
                self.conn.execute("ROLLBACK")
                raise

    def _close_orphans(self) -> None:
        # DuckDB lets one process at a time open this file for writing, so a run still marked
        # running now belongs to a process that died (SIGKILL, power loss) before finishing it.
        self.conn.execute(
            f"UPDATE {CATALOG}._retl_runs SET status = 'aborted', "
            "error = 'the process ended before the run finished; rows it had not acknowledged are sent by the next run' "
            "WHERE status = 'running'"
        )

    # --- snapshots ---------------------------------------------------------------------
    def snapshot(self, sync: str) -> SnapshotInfo | None:
        row = self.conn.execute(
            f"SELECT snapshot_table, key_columns, value_columns, hash_columns, hash_algorithm, destination_key "
            f"FROM {CATALOG}._retl_syncs WHERE sync = ?",
            [sync],
        ).fetchone()
        if not row:
            return None
        return SnapshotInfo(sync, f"{CATALOG}.main.{quote(row[0])}", list(row[1]), list(row[2]), list(row[3]), row[4], row[5])

    def ensure_snapshot(
        self,
        sync: str,
        key_types: dict[str, str],
        value_types: dict[str, str],
        hash_columns: list[str],
        *,
        destination_key: str | None = None,
        preview: bool = False,
        model_table: str | None = None,
    ) -> SnapshotInfo:
        """The sync's snapshot table, created or evolved to hold these columns.

        New mapped columns are added; if the hash algorithm or engine changed, hashes are
        recomputed from the stored values so nothing looks changed. A snapshot of another
        destination (``destination_key`` differs: another instance, project, list, audience
        name...) or of another key is worthless: it is started afresh, so every row is sent.
        A ``preview`` never drops anything: it diffs against an empty stand-in instead.
        """
        from reverse_etl.sqlbuild import row_hash, sql

        info = self.snapshot(sync)
        algorithm = hash_algorithm()
        key_columns = list(key_types)
        reset = reset_reason(info, key_columns, destination_key)
        if reset is not None:
            if preview:
                return self._empty_stand_in(sync, key_types, value_types, hash_columns, algorithm, reset)
            self.drop_snapshot(sync)
            info = None
        if info is None:
            name = _table_name(sync)
            table = f"{CATALOG}.main.{quote(name)}"
            cols = [f"{quote(c)} {t}" for c, t in {**key_types, **value_types}.items()]
            cols.append('"__retl_hash" UBIGINT NOT NULL')
            self.conn.execute(f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(cols)})")
            self.conn.execute(
                f"INSERT OR REPLACE INTO {CATALOG}._retl_syncs (sync, snapshot_table, key_columns, value_columns, "
                "hash_columns, hash_algorithm, engine_version, created_at, updated_at, destination_key) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [sync, name, key_columns, list(value_types), hash_columns, algorithm, ENGINE_VERSION, now(), now(), destination_key],
            )
            self._sync_held(table)
            return SnapshotInfo(sync, table, key_columns, list(value_types), hash_columns, algorithm, destination_key, reset)
        existing = self.table_columns(info.table)
        for column, sql_type in value_types.items():
            if column not in existing:
                self.conn.execute(f"ALTER TABLE {info.table} ADD COLUMN {quote(column)} {sql_type}")
            elif existing[column] != sql_type:
                try:
                    self.conn.execute(f"ALTER TABLE {info.table} ALTER {quote(column)} TYPE {sql_type}")
                except duckdb.Error:
                    # Values that cannot be converted are cleared; those rows show as changed and are resent.
                    self.conn.execute(f"ALTER TABLE {info.table} DROP COLUMN {quote(column)}")
                    self.conn.execute(f"ALTER TABLE {info.table} ADD COLUMN {quote(column)} {sql_type}")
        value_columns = list(dict.fromkeys([*info.value_columns, *value_types]))
        if info.hash_algorithm != algorithm and info.hash_columns == hash_columns:
            rehash = row_hash(hash_columns, None)
            self.conn.execute(f'UPDATE {info.table} SET "__retl_hash" = {sql(rehash)}')
        self.conn.execute(
            f"UPDATE {CATALOG}._retl_syncs SET value_columns = ?, hash_columns = ?, hash_algorithm = ?, "
            "engine_version = ?, updated_at = ?, destination_key = coalesce(?, destination_key) WHERE sync = ?",
            [value_columns, hash_columns, algorithm, ENGINE_VERSION, now(), destination_key, sync],
        )
        self._sync_held(info.table)
        return SnapshotInfo(sync, info.table, key_columns, value_columns, hash_columns, algorithm, destination_key)

    def _sync_held(self, table: str) -> None:
        """The snapshot's table of maybe-held rows (see Differ.hold), with the snapshot's columns."""
        held = held_table(table)
        self.conn.execute(f"CREATE TABLE IF NOT EXISTS {held} AS SELECT * FROM {table} LIMIT 0")
        have = self.table_columns(held)
        for column, sql_type in self.table_columns(table).items():
            if have.get(column) == sql_type:
                continue
            if column in have:  # retyped in the snapshot: the few held values are cleared
                self.conn.execute(f"ALTER TABLE {held} DROP COLUMN {quote(column)}")
            self.conn.execute(f"ALTER TABLE {held} ADD COLUMN {quote(column)} {sql_type}")

    def _empty_stand_in(
        self, sync: str, key_types: dict[str, str], value_types: dict[str, str], hash_columns: list[str], algorithm: str, reset: str
    ) -> SnapshotInfo:
        table = f"memory.main.{quote('__retl_empty_' + _table_name(sync))}"
        cols = [f"{quote(c)} {t}" for c, t in {**key_types, **value_types}.items()]
        self.conn.execute(f'CREATE OR REPLACE TABLE {table} ({", ".join(cols)}, "__retl_hash" UBIGINT NOT NULL)')
        self.conn.execute(f"CREATE OR REPLACE TABLE {held_table(table)} AS SELECT * FROM {table} LIMIT 0")
        return SnapshotInfo(sync, table, list(key_types), list(value_types), hash_columns, algorithm, None, reset)

    def table_columns(self, qualified: str) -> dict[str, str]:
        rows = self.conn.execute(f"DESCRIBE {qualified}").fetchall()
        return {str(r[0]): str(r[1]) for r in rows}

    def drop_snapshot(self, sync: str) -> None:
        info = self.snapshot(sync)
        if info:
            self.conn.execute(f"DROP TABLE IF EXISTS {info.table}")
            self.conn.execute(f"DROP TABLE IF EXISTS {held_table(info.table)}")
            self.conn.execute(f"DELETE FROM {CATALOG}._retl_syncs WHERE sync = ?", [sync])

    def snapshot_count(self, info: SnapshotInfo) -> int:
        row = self.conn.execute(f"SELECT count(*) FROM {info.table}").fetchone()
        return int(row[0]) if row else 0

    def iter_snapshot(self, table: str, columns: Sequence[str]) -> Iterator[tuple[Any, ...]]:
        # Its own cursor, so the runner's other queries may interleave with the stream.
        cursor = self.conn.cursor()
        try:
            cursor.execute(f"SELECT {', '.join(quote(c) for c in columns)} FROM {table}")
            while batch := cursor.fetchmany(10_000):
                yield from batch
        finally:
            cursor.close()

    # --- _retl_meta ----------------------------------------------------------------------
    def meta_get(self, key: str) -> str | None:
        row = self.conn.execute(f"SELECT value FROM {CATALOG}._retl_meta WHERE key = ?", [key]).fetchone()
        return None if row is None else str(row[0])

    def meta_put(self, key: str, value: str | None) -> None:
        if value is None:
            self.conn.execute(f"DELETE FROM {CATALOG}._retl_meta WHERE key = ?", [key])
        else:
            self.conn.execute(f"INSERT OR REPLACE INTO {CATALOG}._retl_meta VALUES (?, ?)", [key, value])

    # --- runs --------------------------------------------------------------------------
    def start_run(self, sync: str, *, full_resync: bool = False, trigger: str | None = None) -> RunRecord:
        record = RunRecord(
            run_id=uuid.uuid4().hex[:12], sync=sync, status="running", started_at=now(),
            full_resync=full_resync, trigger=trigger,
        )
        self.conn.execute(
            f"INSERT INTO {CATALOG}._retl_runs (run_id, sync, status, started_at, full_resync, trigger) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [record.run_id, sync, record.status, record.started_at, full_resync, trigger],
        )
        return record

    def finish_run(self, record: RunRecord, keep: int | None = None) -> None:
        record.finished_at = now()
        record.duration_s = round((record.finished_at - record.started_at).total_seconds(), 3)
        self.conn.execute(
            f"UPDATE {CATALOG}._retl_runs SET status = ?, finished_at = ?, duration_s = ?, added = ?, "
            "changed = ?, removed = ?, sent = ?, failed = ?, rejected = ?, error = ? WHERE run_id = ?",
            [record.status, record.finished_at, record.duration_s, record.added, record.changed, record.removed,
             record.sent, record.failed, record.rejected, record.error, record.run_id],
        )
        if keep:
            self.prune(record.sync, keep)

    def prune(self, sync: str, keep: int) -> None:
        old = f"""SELECT run_id FROM {CATALOG}._retl_runs WHERE sync = ? ORDER BY started_at DESC OFFSET ?"""
        self.conn.execute(f"DELETE FROM {CATALOG}._retl_row_errors WHERE run_id IN ({old})", [sync, keep])
        self.conn.execute(f"DELETE FROM {CATALOG}._retl_runs WHERE run_id IN ({old})", [sync, keep])

    def checkpoint(self) -> None:
        """DuckDB checkpoints by itself once its log holds 16 MB, inside whichever commit crosses
        that, and on close whatever is left: after the last commit of a run, with nothing to
        overlap it. The streamer calls this while the last chunks are still being sent. Only
        a head start: if DuckDB declines (another transaction is open), the close does it."""
        try:
            self.conn.execute(f"CHECKPOINT {CATALOG}")
        except duckdb.Error as exc:
            log.debug("checkpoint of the state store deferred to its close: %s", exc)

    def add_row_errors(self, record: RunRecord, errors: list[RowError]) -> None:
        if not errors:
            return
        at = now()
        self.conn.executemany(
            f"INSERT INTO {CATALOG}._retl_row_errors VALUES (?, ?, ?, ?, ?, ?, ?)",
            [[record.run_id, record.sync, e.row_key, e.action, e.kind, e.reason[:2000], at] for e in errors],
        )

    def runs(self, syncs: list[str] | None = None, limit: int = 50) -> list[RunRecord]:
        where, params = "", []
        if syncs is not None:
            where = "WHERE list_contains(?, sync)"
            params.append(syncs)
        rows = self.conn.execute(
            f"SELECT {_RUN_COLUMNS} FROM {CATALOG}._retl_runs {where} ORDER BY started_at DESC LIMIT {int(limit)}",
            params,
        ).fetchall()
        return [_record(r) for r in rows]

    def run(self, run_id: str) -> RunRecord | None:
        row = self.conn.execute(
            f"SELECT {_RUN_COLUMNS} FROM {CATALOG}._retl_runs WHERE run_id LIKE ? ORDER BY started_at DESC LIMIT 1",
            [run_id + "%"],
        ).fetchone()
        if not row:
            return None
        record = _record(row)
        errs = self.conn.execute(
            f"SELECT row_key, action, kind, reason FROM {CATALOG}._retl_row_errors WHERE run_id = ? ORDER BY row_key",
            [record.run_id],
        ).fetchall()
        record.errors = [RowError(*e) for e in errs]
        return record


def _record(row: tuple[Any, ...]) -> RunRecord:
    return RunRecord(*row)


def _table_name(sync: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_]", "_", sync)[:40]
    digest = hashlib.sha1(sync.encode()).hexdigest()[:8]
    return f"snapshot__{safe}__{digest}"
