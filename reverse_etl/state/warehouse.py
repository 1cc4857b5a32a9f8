"""State kept in the user's warehouse, in a schema of its own (``_retl`` by default).

The same tables as the local DuckDB state file, so the diff runs where the data is: snapshots
are read by the diff's join and advanced by the acknowledgement's deletes and inserts, all in
the warehouse. Column lists are kept as JSON text (not every engine has arrays). Every
statement is canonical SQL (:mod:`reverse_etl.warehouse.sql`) generated for the engine.

A snapshot table is created from the model itself (``CREATE TABLE ... AS SELECT ... WHERE 1 = 0``),
so its columns have exactly the model's types on every engine without a type-name mapping.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from reverse_etl.diff.engine import held_table
from reverse_etl.errors import StateBusyError, StateError
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
from reverse_etl.state.migrations import WAREHOUSE_LATEST, WAREHOUSE_MIGRATIONS
from reverse_etl.warehouse.sql import lit, q

if TYPE_CHECKING:
    from reverse_etl.warehouse.sql import SqlSession


def ts(value: datetime | None) -> str:
    return "NULL" if value is None else f"CAST({lit(value.isoformat(sep=' '))} AS TIMESTAMP)"


class SqlStateStore(StateStore):
    """:class:`StateStore` in a schema of a pushdown warehouse."""

    def __init__(self, session: SqlSession, schema: str) -> None:
        self.session = session
        self.schema = schema
        self.path = f"{session.dialect}:{schema}"
        self.append_only = session.warehouse.APPEND_ONLY
        self._keys: dict[str, list[str]] = {}  # snapshot table -> key columns (to read an append-only one)

    def current(self, name: str, key: list[str]) -> str:
        """A state table's current rows (see :meth:`SqlSession.current`)."""
        return self.session.current(self.t(name), key)

    def versioned(self, gone: bool = False) -> tuple[str, str]:
        """Extra insert columns and values of an append-only engine (empty otherwise)."""
        if not self.append_only:
            return "", ""
        return ', "__retl_v", "__retl_gone"', f", {self.session.next_version()}, {'TRUE' if gone else 'FALSE'}"

    def t(self, name: str) -> str:
        return q(self.schema, name)

    @classmethod
    def open(cls, session: SqlSession, schema: str) -> SqlStateStore:  # type: ignore[override]
        """The state in ``schema``: created and migrated if needed, locked for this run."""
        store = cls(session, schema)
        warehouse = session.warehouse
        try:
            session.execute(f"CREATE SCHEMA IF NOT EXISTS {q(schema)}")
        except Exception as exc:
            raise StateError(
                f"cannot create the state schema {schema!r} in the {session.dialect} warehouse: {exc}",
                hint="grant this user CREATE on the database, or create the schema and grant it",
            ) from None
        if not warehouse.lock_state(session, schema):
            raise StateBusyError(
                f"the state in {session.dialect} schema {schema!r} is in use by another retl process",
                hint="wait for the other run to finish (retl runs shows what is running)",
            )
        store.migrate()
        if warehouse.SUPPORTS_STATE_LOCK:
            # Holding the lock, a run still marked running belongs to a process that died.
            session.execute(
                f"UPDATE {store.t('_retl_runs')} SET \"status\" = 'aborted', \"error\" = "
                f"{lit('the process ended before the run finished; rows it had not acknowledged are sent by the next run')} "
                "WHERE \"status\" = 'running'"
            )
        return store

    def exists(self) -> bool:
        """Whether the state tables are there (for readers, which create nothing)."""
        try:
            self.session.query(f'SELECT count(*) FROM {self.t("_retl_runs")} WHERE 1 = 0')
        except Exception:
            self.session.reset()
            return False
        return True

    def migrate(self) -> None:
        s = self.session
        s.execute(
            f'CREATE TABLE IF NOT EXISTS {self.t("_retl_migrations")} '
            '("version" INTEGER NOT NULL, "description" TEXT, "applied_at" TIMESTAMP)'
        )
        current = int(s.scalar(f'SELECT max("version") FROM {self.t("_retl_migrations")}') or 0)
        if current > WAREHOUSE_LATEST:
            raise StateError(
                f"the state in schema {self.schema!r} has version {current}, newer than this reverse_etl knows ({WAREHOUSE_LATEST})",
                hint="upgrade reverse_etl; never downgrade a state store",
            )
        for version, description, statements in WAREHOUSE_MIGRATIONS:
            if version <= current:
                continue
            # The version row is written last: a migration cut short is run again (IF NOT EXISTS).
            with s.transaction(ddl=True):
                for statement in statements:
                    s.execute(statement.format(s=q(self.schema), v=', "__retl_v" BIGINT, "__retl_gone" BOOLEAN' if self.append_only else ""))
                s.execute(
                    f"INSERT INTO {self.t('_retl_migrations')} VALUES ({version}, {lit(description)}, {ts(now())})"
                )

    # --- snapshots ---------------------------------------------------------------------
    def snapshot(self, sync: str) -> SnapshotInfo | None:
        rows = self.session.query(
            'SELECT "snapshot_table", "key_columns", "value_columns", "hash_columns", "hash_algorithm", "destination_key" '
            f'FROM {self.current("_retl_syncs", ["sync"])} AS x WHERE "sync" = {lit(sync)}'
        )
        if not rows:
            return None
        r = rows[0]
        self._keys[self.t(r[0])] = json.loads(r[1])
        return SnapshotInfo(sync, self.t(r[0]), json.loads(r[1]), json.loads(r[2]), json.loads(r[3]), r[4], r[5])

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
        s = self.session
        algorithm = s.warehouse.HASH_ALGORITHM
        info = self.snapshot(sync)
        key_columns = list(key_types)
        reset = reset_reason(info, key_columns, destination_key)
        if model_table is None:
            raise StateError("a warehouse snapshot is created from its model: pass model_table")
        stored = [*key_columns, *value_types]
        shape = f'SELECT {", ".join(q(c) for c in stored)}, CAST(NULL AS TEXT) AS "__retl_hash"'
        if self.append_only:
            shape += ', CAST(NULL AS BIGINT) AS "__retl_v", CAST(NULL AS BOOLEAN) AS "__retl_gone"'
        shape += f" FROM {model_table} WHERE 1 = 0"
        if info is not None and reset is None and not s.warehouse.SUPPORTS_DROP_COLUMN:
            existing = s.warehouse.describe(s, info.table)
            retyped = [c for c, t in value_types.items() if c in existing and not _same_type(existing[c], t)]
            if retyped:  # the engine cannot drop a column to clear its values: start afresh
                reset = f"column(s) {retyped} changed type"
        if reset is not None:
            if preview:
                table = s.scratch("empty", shape)
                s.scratch("empty", shape, name=held_table(table))
                return SnapshotInfo(sync, table, key_columns, list(value_types), hash_columns, algorithm, None, reset)
            self.drop_snapshot(sync)
            info = None
        if info is None:
            name = _table_name(sync)
            table = self.t(name)
            cols, vals = self.versioned()
            with s.transaction(ddl=True):
                # Not in _retl_syncs, a table of this name is an orphan of a run cut short.
                s.execute(f"DROP TABLE IF EXISTS {table}")
                s.execute(f"CREATE TABLE {table} AS {shape}")
                s.execute(
                    f'INSERT INTO {self.t("_retl_syncs")} ("sync", "snapshot_table", "key_columns", "value_columns", '
                    f'"hash_columns", "hash_algorithm", "engine_version", "created_at", "updated_at", "destination_key"{cols}) '
                    f"VALUES ({lit(sync)}, {lit(name)}, {lit(json.dumps(key_columns))}, {lit(json.dumps(list(value_types)))}, "
                    f"{lit(json.dumps(hash_columns))}, {lit(algorithm)}, {lit(ENGINE_VERSION)}, {ts(now())}, {ts(now())}, "
                    f"{lit(destination_key)}{vals})"
                )
            s.warehouse.after_snapshot(s, table, key_columns)
            self._keys[table] = key_columns
            self._sync_held(table)
            return SnapshotInfo(sync, table, key_columns, list(value_types), hash_columns, algorithm, destination_key, reset)
        existing = s.warehouse.describe(s, info.table)
        for column, sql_type in value_types.items():
            if column in existing and _same_type(existing[column], sql_type):
                continue
            # A new column, or one whose type changed: its old values cannot be compared, so
            # they are cleared and those rows show as changed (and are sent) once.
            if column in existing:
                s.execute(f"ALTER TABLE {info.table} DROP COLUMN {q(column)}")
            s.warehouse.add_column(s, info.table, column, sql_type)
        value_columns = list(dict.fromkeys([*info.value_columns, *value_types]))
        if info.hash_algorithm != algorithm and info.hash_columns == hash_columns and not self.append_only:
            # WHERE TRUE: BigQuery refuses an UPDATE without a WHERE clause.
            s.execute(f'UPDATE {info.table} SET "__retl_hash" = {s.row_hash(hash_columns, None)} WHERE TRUE')
        self._sync_held(info.table)
        if self.append_only:
            cols, vals = self.versioned()
            s.execute(
                f'INSERT INTO {self.t("_retl_syncs")} ({", ".join(q(c) for c in _SYNC_COLUMNS)}{cols}) '
                f"VALUES ({lit(sync)}, {lit(info.table.split('.')[-1].strip(chr(34)))}, {lit(json.dumps(key_columns))}, "
                f"{lit(json.dumps(value_columns))}, {lit(json.dumps(hash_columns))}, {lit(algorithm)}, {lit(ENGINE_VERSION)}, "
                f"{ts(now())}, {ts(now())}, {lit(destination_key or info.destination_key)}{vals})"
            )
            return SnapshotInfo(sync, info.table, key_columns, value_columns, hash_columns, algorithm, destination_key)
        s.execute(
            f'UPDATE {self.t("_retl_syncs")} SET "value_columns" = {lit(json.dumps(value_columns))}, '
            f'"hash_columns" = {lit(json.dumps(hash_columns))}, "hash_algorithm" = {lit(algorithm)}, '
            f'"engine_version" = {lit(ENGINE_VERSION)}, "updated_at" = {ts(now())}, '
            f'"destination_key" = COALESCE({lit(destination_key)}, "destination_key") WHERE "sync" = {lit(sync)}'
        )
        return SnapshotInfo(sync, info.table, key_columns, value_columns, hash_columns, algorithm, destination_key)

    def _sync_held(self, table: str) -> None:
        """The snapshot's table of maybe-held rows (see Differ.hold), with the snapshot's columns."""
        s = self.session
        held = held_table(table)
        s.execute(f"CREATE TABLE IF NOT EXISTS {held} AS SELECT * FROM {table} WHERE 1 = 0")
        have = s.warehouse.describe(s, held)
        for column, sql_type in s.warehouse.describe(s, table).items():
            if column in have and _same_type(have[column], sql_type):
                continue
            if column in have:  # retyped in the snapshot: the few held values are cleared
                if not s.warehouse.SUPPORTS_DROP_COLUMN:
                    continue  # such engines start the snapshot afresh on a retype (and its held table)
                s.execute(f"ALTER TABLE {held} DROP COLUMN {q(column)}")
            s.warehouse.add_column(s, held, column, sql_type)

    def drop_snapshot(self, sync: str) -> None:
        info = self.snapshot(sync)
        if info:
            with self.session.transaction(ddl=True):
                self.session.execute(f"DROP TABLE IF EXISTS {info.table}")
                self.session.execute(f"DROP TABLE IF EXISTS {held_table(info.table)}")
                if self.append_only:
                    self._tombstone("_retl_syncs", _SYNC_COLUMNS, ["sync"], f'"sync" = {lit(sync)}')
                else:
                    self.session.execute(f'DELETE FROM {self.t("_retl_syncs")} WHERE "sync" = {lit(sync)}')

    def snapshot_count(self, info: SnapshotInfo) -> int:
        current = self.session.current(info.table, info.key_columns)
        return int(self.session.scalar(f"SELECT count(*) FROM {current} AS x") or 0)

    def iter_snapshot(self, table: str, columns: Sequence[str]) -> Iterator[tuple[Any, ...]]:
        current = self.session.current(table, self._keys.get(table, []))
        sql = self.session.native(f"SELECT {', '.join(q(c) for c in columns)} FROM {current} AS x")
        for batch in self.session.warehouse.fetch_arrow(self.session, sql):
            yield from zip(*(col.to_pylist() for col in batch.columns), strict=True)

    def _tombstone(self, name: str, columns: Sequence[str], key: list[str], where: str) -> None:
        """Append-only delete: a newer version of the matching rows, marked gone."""
        cols = ", ".join(q(c) for c in columns)
        self.session.execute(
            f'INSERT INTO {self.t(name)} ({cols}, "__retl_v", "__retl_gone") '
            f"SELECT {cols}, {self.session.next_version()}, TRUE FROM {self.current(name, key)} AS x WHERE {where}"
        )

    # --- _retl_meta ----------------------------------------------------------------------
    def meta_get(self, key: str) -> str | None:
        value = self.session.scalar(f'SELECT "value" FROM {self.current("_retl_meta", ["key"])} AS x WHERE "key" = {lit(key)}')
        return None if value is None else str(value)

    def meta_put(self, key: str, value: str | None) -> None:
        if self.append_only:
            cols, vals = self.versioned(gone=value is None)
            self.session.execute(
                f'INSERT INTO {self.t("_retl_meta")} ("key", "value"{cols}) VALUES ({lit(key)}, {lit(value)}{vals})'
            )
            return
        with self.session.transaction():
            self.session.execute(f'DELETE FROM {self.t("_retl_meta")} WHERE "key" = {lit(key)}')
            if value is not None:
                self.session.execute(f'INSERT INTO {self.t("_retl_meta")} ("key", "value") VALUES ({lit(key)}, {lit(value)})')

    # --- runs --------------------------------------------------------------------------
    def start_run(self, sync: str, *, full_resync: bool = False, trigger: str | None = None) -> RunRecord:
        record = RunRecord(run_id=uuid.uuid4().hex[:12], sync=sync, status="running", started_at=now(),
                           full_resync=full_resync, trigger=trigger)
        cols, vals = self.versioned()
        self.session.execute(
            f'INSERT INTO {self.t("_retl_runs")} ("run_id", "sync", "status", "started_at", "full_resync", "trigger"{cols}) '
            f"VALUES ({lit(record.run_id)}, {lit(sync)}, 'running', {ts(record.started_at)}, {lit(full_resync)}, {lit(trigger)}{vals})"
        )
        return record

    def finish_run(self, record: RunRecord, keep: int | None = None) -> None:
        record.finished_at = now()
        record.duration_s = round((record.finished_at - record.started_at).total_seconds(), 3)
        if self.append_only:  # the run's newest row is its record
            cols, vals = self.versioned()
            values = [record.run_id, record.sync, record.status]
            self.session.execute(
                f"INSERT INTO {self.t('_retl_runs')} ({', '.join(q(c) for c in RUN_COLUMNS)}{cols}) VALUES ("
                f"{', '.join(lit(v) for v in values)}, {ts(record.started_at)}, {ts(record.finished_at)}, "
                f"{lit(record.duration_s)}, {int(record.added)}, {int(record.changed)}, {int(record.removed)}, "
                f"{int(record.sent)}, {int(record.failed)}, {int(record.rejected)}, {lit(record.full_resync)}, "
                f"{lit(record.trigger)}, {lit(record.error)}{vals})"
            )
            return  # no pruning: an append-only history is only ever added to
        self.session.execute(
            f'UPDATE {self.t("_retl_runs")} SET "status" = {lit(record.status)}, "finished_at" = {ts(record.finished_at)}, '
            f'"duration_s" = {lit(record.duration_s)}, "added" = {int(record.added)}, "changed" = {int(record.changed)}, '
            f'"removed" = {int(record.removed)}, "sent" = {int(record.sent)}, "failed" = {int(record.failed)}, '
            f'"rejected" = {int(record.rejected)}, "error" = {lit(record.error)} WHERE "run_id" = {lit(record.run_id)}'
        )
        if keep:
            self.prune(record.sync, keep)

    def prune(self, sync: str, keep: int) -> None:
        old = (
            f'SELECT "run_id" FROM (SELECT "run_id", row_number() OVER (ORDER BY "started_at" DESC) AS "n" '
            f'FROM {self.t("_retl_runs")} WHERE "sync" = {lit(sync)}) AS r WHERE "n" > {int(keep)}'
        )
        with self.session.transaction():
            self.session.execute(f'DELETE FROM {self.t("_retl_row_errors")} WHERE "run_id" IN ({old})')
            self.session.execute(f'DELETE FROM {self.t("_retl_runs")} WHERE "run_id" IN ({old})')

    def add_row_errors(self, record: RunRecord, errors: list[RowError]) -> None:
        at = ts(now())
        for start in range(0, len(errors), 500):
            values = ", ".join(
                f"({lit(record.run_id)}, {lit(record.sync)}, {lit(e.row_key)}, {lit(e.action)}, {lit(e.kind)}, "
                f"{lit(e.reason[:2000])}, {at})"
                for e in errors[start : start + 500]
            )
            self.session.execute(
                f'INSERT INTO {self.t("_retl_row_errors")} ("run_id", "sync", "row_key", "action", "kind", "reason", "at") '
                f"VALUES {values}"
            )

    def runs(self, syncs: list[str] | None = None, limit: int = 50) -> list[RunRecord]:
        where = ""
        if syncs is not None:
            if not syncs:
                return []
            where = f'WHERE "sync" IN ({", ".join(lit(x) for x in syncs)})'
        rows = self.session.query(
            f"SELECT {', '.join(q(c) for c in RUN_COLUMNS)} FROM {self.current('_retl_runs', ['run_id'])} AS x {where} "
            f'ORDER BY "started_at" DESC LIMIT {int(limit)}'
        )
        return [_record(r) for r in rows]

    def run(self, run_id: str) -> RunRecord | None:
        rows = self.session.query(
            f"SELECT {', '.join(q(c) for c in RUN_COLUMNS)} FROM {self.current('_retl_runs', ['run_id'])} AS x "
            f'WHERE "run_id" LIKE {lit(run_id + "%")} ORDER BY "started_at" DESC LIMIT 1'
        )
        if not rows:
            return None
        record = _record(rows[0])
        errs = self.session.query(
            f'SELECT "row_key", "action", "kind", "reason" FROM {self.t("_retl_row_errors")} '
            f'WHERE "run_id" = {lit(record.run_id)} ORDER BY "row_key"'
        )
        record.errors = [RowError(*e) for e in errs]
        return record


_SYNC_COLUMNS = (
    "sync", "snapshot_table", "key_columns", "value_columns", "hash_columns", "hash_algorithm", "engine_version",
    "created_at", "updated_at", "destination_key",
)


def _record(row: tuple[Any, ...]) -> RunRecord:
    values = list(row)
    for i in (6, 7, 8, 9, 10, 11):  # counts may come back as Decimal or None
        values[i] = int(values[i] or 0)
    values[12] = bool(values[12])
    values[5] = None if values[5] is None else float(values[5])
    return RunRecord(*values)


def _same_type(a: str, b: str) -> bool:
    return re.sub(r"\s+", "", a).lower() == re.sub(r"\s+", "", b).lower()


def _table_name(sync: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_]", "_", sync)[:40]
    digest = hashlib.sha1(sync.encode()).hexdigest()[:8]
    return f"snapshot__{safe}__{digest}"
