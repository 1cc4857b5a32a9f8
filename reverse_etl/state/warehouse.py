"""State kept in the user's warehouse, in a schema of its own (``_retl`` by default).

The same tables as the local DuckDB state file, so the diff runs where the data is: snapshots
are read by the diff's join and advanced by the acknowledgement's deletes and inserts, all in
the warehouse. Column lists are kept as JSON text (not every engine has arrays). Every
statement is canonical SQL (:mod:`reverse_etl.warehouse.sql`) generated for the engine.

A snapshot table is created from the model itself (``CREATE TABLE ... AS SELECT ... WHERE 1 = 0``),
so its columns have exactly the model's types on every engine without a type-name mapping.

A run holds the engine's state lock (:mod:`reverse_etl.warehouse.locking`) from :meth:`SqlStateStore.open`
to the end of the session.

On append-only engines (Spark, Databricks) every change is a new row version, so two chores keep
the logs in check after each run (:meth:`SqlStateStore.maintain`); both are written so that a
process killed at any statement leaves a readable, correct state, and the next run finishes or
undoes what was left (a note in ``_retl_meta`` says what was under way):

- compaction: a snapshot log holding more than ``compact_ratio`` rows per live row (and more
  than ``compact_min_rows``) is copied, live rows only, into a new table; one INSERT into
  ``_retl_syncs`` then points the sync at it (the commit point), and the old table is dropped.
- pruning: when a sync has ``keep`` runs and half as many again, run history is copied (the
  newest ``keep`` runs of each sync and their row errors) and written back over the tables
  (``INSERT OVERWRITE``; not atomic on Parquet, so the copies stay until it is done).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from reverse_etl.diff.engine import held_table
from reverse_etl.errors import RetlError, StateBusyError, StateError
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

log = logging.getLogger("reverse_etl.state")
COMPACT_RATIO = 4.0  # an append-only snapshot log is compacted past this many rows per live row ...
COMPACT_MIN_ROWS = 10_000  # ... and this many rows in all (smaller logs are cheap to read as they are)
PRUNE_SLACK = 0.5  # append-only run history is rewritten when a sync has keep * (1 + this) runs
_PRUNE_KEY = "retl:prune"
_ABORTED = "the process ended before the run finished; rows it had not acknowledged are sent by the next run"


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
        self._live: dict[str, int] = {}  # snapshot table -> live rows, as last counted
        self._notes: dict[str, str] | None = None  # upkeep notes, read once (the lock keeps them ours)
        self.compact_ratio = COMPACT_RATIO
        self.compact_min_rows = COMPACT_MIN_ROWS

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
        lock = warehouse.state_lock(session, schema)
        holder = lock.acquire()
        if holder is not None:
            raise StateBusyError(
                f"the state in {session.dialect} schema {schema!r} is in use by another retl process ({holder.describe()})",
                hint="wait for the other run to finish (retl runs shows what is running)",
            )
        session.state_lock = lock  # released when the session ends, on success or error
        store.migrate()
        if warehouse.SUPPORTS_STATE_LOCK:
            store.abort_running()
        return store

    def abort_running(self) -> None:
        """Holding the lock, a run still marked running belongs to a process that died."""
        if not self.append_only:
            self.session.execute(
                f"UPDATE {self.t('_retl_runs')} SET \"status\" = 'aborted', \"error\" = {lit(_ABORTED)} "
                "WHERE \"status\" = 'running'"
            )
            return
        running = f"FROM {self.current('_retl_runs', ['run_id'])} AS x WHERE \"status\" = 'running'"
        if not self.session.query(f'SELECT "run_id" {running} LIMIT 1'):
            return  # the common case: no new row versions
        cols = [f"{lit(_ABORTED)}" if c == "error" else "'aborted'" if c == "status" else q(c) for c in RUN_COLUMNS]
        self.session.execute(
            f"INSERT INTO {self.t('_retl_runs')} ({', '.join(q(c) for c in RUN_COLUMNS)}, \"__retl_v\", \"__retl_gone\") "
            f"SELECT {', '.join(cols)}, {self.session.next_version()}, FALSE {running}"
        )

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
            self._sync_held(table, key_columns)
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
        self._sync_held(info.table, key_columns)
        if self.append_only:
            cols, vals = self.versioned()
            s.execute(
                f'INSERT INTO {self.t("_retl_syncs")} ({", ".join(q(c) for c in _SYNC_COLUMNS)}{cols}) '
                f"VALUES ({lit(sync)}, {lit(_bare(info.table))}, {lit(json.dumps(key_columns))}, "
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

    def _sync_held(self, table: str, key: list[str]) -> None:
        """The snapshot's table of maybe-held rows (see Differ.hold), with the snapshot's columns."""
        s = self.session
        held = held_table(table)
        s.execute(f"CREATE TABLE IF NOT EXISTS {held} AS SELECT * FROM {table} WHERE 1 = 0")
        s.warehouse.after_held(s, held, key)
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
        count = int(self.session.scalar(f"SELECT count(*) FROM {current} AS x") or 0)
        self._live[info.table] = count
        return count

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
        lock = self.session.state_lock
        if lock is not None:
            lock.check(f"{self.session.dialect} schema {self.schema!r}")
            lock.running(sync)
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
            self.maintain(record.sync, keep)
            return
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

    # --- append-only upkeep ------------------------------------------------------------------
    def maintain(self, sync: str, keep: int | None) -> None:
        """Compact the sync's snapshot log and prune run history when they outgrew their bounds.

        Neither is needed for correctness, so a failure is logged, not raised: whatever step it
        stopped at, the state reads as it did (and the next run tidies up).
        """
        chores: list[tuple[str, Callable[[], bool]]] = [("compact the snapshot of", lambda: self.compact(sync))]
        if keep:
            chores.append(("prune the run history of", lambda: self.prune_log(sync, keep)))
        for what, chore in chores:
            try:
                chore()
            except Exception as exc:
                if isinstance(exc, RetlError) and not isinstance(exc, StateError):
                    raise
                self.session.reset()
                log.warning("could not %s sync %r in %s (tried again after the next run): %s", what, sync, self.path, exc)

    def compact(self, sync: str) -> bool:
        """Rewrite the sync's snapshot log to its live rows if it holds too many dead ones; True if it did."""
        info = self.snapshot(sync)
        self._finish_compaction(sync, _bare(info.table) if info else None)
        if info is None:
            return False
        s = self.session
        total = int(s.scalar(f"SELECT count(*) FROM {info.table}") or 0)
        if total <= self.compact_min_rows:
            return False
        live = self._live.get(info.table)
        if live is None:
            live = self.snapshot_count(info)
        if total <= self.compact_ratio * live:
            return False
        new_name = f"{_table_name(sync)}__c{s.next_version()}"
        # Noted first: a run cut short anywhere below leaves a note the next run acts on.
        self._put_note(_compaction_key(sync), json.dumps({"old": _bare(info.table), "new": new_name}))
        for source, target in ((info.table, self.t(new_name)), (held_table(info.table), held_table(self.t(new_name)))):
            columns = ", ".join(q(c) for c in s.warehouse.describe(s, source))
            s.execute(f"CREATE TABLE {target} AS SELECT {columns} FROM {s.current(source, info.key_columns)} AS x")
        copied = int(s.scalar(f"SELECT count(*) FROM {self.t(new_name)}") or 0)
        expected = self.snapshot_count(info)
        if copied != expected:
            raise StateError(f"the compacted copy of {info.table} has {copied} rows, not {expected}; the log is kept")
        self._repoint(sync, new_name)  # the commit point: one INSERT
        self._keys[self.t(new_name)] = info.key_columns
        self._finish_compaction(sync, new_name)
        return True

    def _repoint(self, sync: str, table: str) -> None:
        """Point the sync at another snapshot table: a new version of its ``_retl_syncs`` row."""
        columns = [lit(table) if c == "snapshot_table" else q(c) for c in _SYNC_COLUMNS]
        self.session.execute(
            f'INSERT INTO {self.t("_retl_syncs")} ({", ".join(q(c) for c in _SYNC_COLUMNS)}, "__retl_v", "__retl_gone") '
            f"SELECT {', '.join(columns)}, {self.session.next_version()}, FALSE "
            f'FROM {self.current("_retl_syncs", ["sync"])} AS x WHERE "sync" = {lit(sync)}'
        )

    def _finish_compaction(self, sync: str, current: str | None) -> None:
        """Drop what a compaction left behind: the old log once the sync points at the copy (``current``
        is the table it points at), else the copy."""
        note = self._note(_compaction_key(sync))
        if note is None:
            return
        pending = json.loads(note)
        for name in (pending["old"], pending["new"]):
            if name != current:
                self.session.execute(f"DROP TABLE IF EXISTS {self.t(name)}")
                self.session.execute(f"DROP TABLE IF EXISTS {held_table(self.t(name))}")
        self._put_note(_compaction_key(sync), None)

    def prune_log(self, sync: str, keep: int) -> bool:
        """Keep the newest ``keep`` runs of each sync, once ``sync`` has PRUNE_SLACK more; True if it pruned."""
        self._finish_prune()
        runs = int(self.session.scalar(
            f'SELECT count(DISTINCT "run_id") FROM {self.t("_retl_runs")} WHERE "sync" = {lit(sync)}'
        ) or 0)
        if runs <= keep + math.ceil(keep * PRUNE_SLACK):
            return False
        s = self.session
        version = s.next_version()
        copies = {"runs": f"_retl_runs__keep{version}", "errors": f"_retl_row_errors__keep{version}"}
        self._put_note(_PRUNE_KEY, json.dumps({**copies, "ready": False}))
        run_columns = ", ".join(q(c) for c in s.warehouse.describe(s, self.t("_retl_runs")))
        s.execute(
            f'CREATE TABLE {self.t(copies["runs"])} AS SELECT {run_columns} FROM (SELECT x.*, row_number() OVER '
            f'(PARTITION BY "sync" ORDER BY "started_at" DESC) AS "__retl_n" FROM {self.current("_retl_runs", ["run_id"])} AS x) '
            f'AS k WHERE "__retl_n" <= {int(keep)}'
        )
        error_columns = ", ".join(q(c) for c in s.warehouse.describe(s, self.t("_retl_row_errors")))
        s.execute(
            f'CREATE TABLE {self.t(copies["errors"])} AS SELECT {error_columns} FROM {self.t("_retl_row_errors")} AS e '
            f'WHERE "run_id" IN (SELECT "run_id" FROM {self.t(copies["runs"])})'
        )
        self._put_note(_PRUNE_KEY, json.dumps({**copies, "ready": True}))
        self._finish_prune()
        return True

    def _note(self, key: str) -> str | None:
        """A note of upkeep under way (``retl:`` keys of ``_retl_meta``), all read with the first one."""
        if self._notes is None:
            rows = self.session.query(
                f'SELECT "key", "value" FROM {self.current("_retl_meta", ["key"])} AS x WHERE "key" LIKE {lit("retl:%")}'
            )
            self._notes = {str(k): str(v) for k, v in rows if v is not None}
        return self._notes.get(key)

    def _put_note(self, key: str, value: str | None) -> None:
        self.meta_put(key, value)
        if self._notes is not None:
            self._notes.pop(key, None)
            if value is not None:
                self._notes[key] = value

    def _finish_prune(self) -> None:
        """Write complete copies back over run history (again, if a run stopped halfway), then drop them."""
        note = self._note(_PRUNE_KEY)
        if note is None:
            return
        pending = json.loads(note)
        if pending["ready"]:
            self.session.warehouse.overwrite(self.session, self.t("_retl_runs"), self.t(pending["runs"]))
            self.session.warehouse.overwrite(self.session, self.t("_retl_row_errors"), self.t(pending["errors"]))
        for copy in (pending["runs"], pending["errors"]):
            self.session.execute(f"DROP TABLE IF EXISTS {self.t(copy)}")
        self._put_note(_PRUNE_KEY, None)

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


def _compaction_key(sync: str) -> str:
    return f"retl:compaction:{sync}"


def _bare(table: str) -> str:
    """The table name of a qualified canonical name: ``"_retl"."x"`` -> ``x``."""
    return table.split(".")[-1].strip('"')


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
