"""Set-based diff in DuckDB, and the snapshot advance from acknowledged rows.

The model (computed once into a table) is full-outer-joined with the sync's snapshot on the
primary key; a row hash over the mapped columns (canonical order) decides "changed". The
result, with the sync's mode applied, is one delta table in the run's engine:

====================  ===========================================================
``__retl_seq``        1..n, the order rows are sent in (removals first)
``__retl_kind``       added / changed / removed: what the plan counts
``__retl_action``     what the writer does: upsert update insert remove join leave track
``__retl_ack``        how an accepted row enters the snapshot: insert / replace / delete
key + value columns   new values; for removals the snapshot's values
``__retl_old__<c>``   the snapshot's values (changed rows: the "before" of a preview)
``__retl_hash``       the new row hash; ``__retl_old_hash`` the snapshot's
====================  ===========================================================

No row ever passes through Python to compute the diff; only the delta is streamed out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb

from reverse_etl.diff.actions import action_rows, holds_rows, outcomes_of
from reverse_etl.diff.sqlgen import (
    ACK_KINDS,
    HELD,
    DiffDialect,
    action_columns,
    action_join,
    delta_sql,
    held_table,
    join_sql,
    one_row_per_op,
    op_case,
    send_order,
    snapshot_side,
    spans_from,
    spans_sql,
)
from reverse_etl.errors import DataError
from reverse_etl.modeling.model import quote
from reverse_etl.sqlbuild import ident, row_hash, sql

OLD = "__retl_old__"

# Maybe-held rows (see Differ.hold) live beside the snapshot, in ``held_table(snapshot)``, with this
# row hash. It equals no real hash (DuckDB's hash of a struct is never 1 in practice; a sync without
# hashed columns hashes to 0), so such a row is never "same": while in the model it is sent again
# (as added), and once gone from the model its removal is sent.
MAYBE_HASH = 1

DUCKDB = DiffDialect("duckdb", lambda columns, alias: sql(row_hash(list(columns), alias)), str(MAYBE_HASH))


@dataclass(frozen=True)
class SyncColumns:
    """Which model columns a sync keys on, stores in its snapshot, and hashes."""

    key: list[str]
    values: list[str]  # stored in the snapshot (sorted)
    hashed: list[str]  # hashed to detect changes (sorted)
    identity: list[str] = field(default_factory=list)  # non-key identifier columns: removals need their old values

    @property
    def all(self) -> list[str]:
        return list(dict.fromkeys([*self.key, *self.values, *self.hashed]))


Span = tuple[str, int, int]  # (ack kind, first seq, last seq)


@dataclass(frozen=True)
class Delta:
    """The delta table of one sync in the run's engine."""

    table: str
    columns: SyncColumns
    added: int
    changed: int
    removed: int
    rows: int
    fingerprint: str
    split: bool = False  # holds audience identity changes (a leave and a join for one key)
    holds: bool = False  # added rows are held (maybe-held) before they are sent: see Differ.hold
    maybe: bool = False  # sends rows that were maybe held (their placeholders go on acknowledgement)
    # Where each kind of acknowledgement lies (see sqlgen.spans_sql); None: unknown, so an
    # acknowledgement runs every statement, as if every kind were in every chunk.
    spans: tuple[Span, ...] | None = None

    def touches(self, kind: str, lo: int, hi: int) -> bool:
        """Whether seqs ``lo..hi`` may hold rows of this kind of acknowledgement (or HELD)."""
        if self.spans is None:
            return True
        return any(k == kind and first <= hi and lo <= last for k, first, last in self.spans)


def spans_of(row: Sequence[Any] | None) -> tuple[Span, ...] | None:
    """The answer of :func:`~reverse_etl.diff.sqlgen.spans_sql` as :attr:`Delta.spans`."""
    spans = spans_from(row)
    return None if spans is None else tuple((kind, first, last) for kind, (first, last) in spans.items())


def check_keys(conn: duckdb.DuckDBPyConnection, model_table: str, key: list[str], model: str, examples: int = 5) -> None:
    """Refuse null or duplicate primary keys, listing example rows."""
    keys = ", ".join(quote(k) for k in key)
    distinct_of = keys if len(key) == 1 else f"({keys})"
    any_null = " OR ".join(f"{quote(k)} IS NULL" for k in key)
    row = conn.execute(
        f"SELECT count(*) FILTER (WHERE {any_null}), count(*), count(DISTINCT {distinct_of}) FROM {model_table}"
    ).fetchone()
    assert row is not None
    nulls, total, distinct = int(row[0]), int(row[1]), int(row[2])
    label = " + ".join(key)
    if nulls:
        sample = conn.execute(f"SELECT * FROM {model_table} WHERE {any_null} LIMIT {examples}").fetchall()
        raise DataError(
            f"model {model!r}: {nulls} row(s) have a NULL primary key ({label}); e.g. {sample}",
            hint="filter them out in the model (WHERE ... IS NOT NULL) or choose another primary_key",
        )
    non_null_rows = total
    if distinct != non_null_rows:
        dups = conn.execute(
            f"SELECT {keys}, count(*) AS n FROM {model_table} GROUP BY ALL HAVING count(*) > 1 "
            f"ORDER BY n DESC, {keys} LIMIT {examples}"
        ).fetchall()
        shown = ", ".join(f"{r[:-1] if len(r) > 2 else r[0]!r} x{r[-1]}" for r in dups)
        raise DataError(
            f"model {model!r}: primary key ({label}) is not unique: {non_null_rows - distinct} duplicate row(s); e.g. {shown}",
            hint="deduplicate in the model (e.g. QUALIFY row_number() OVER (PARTITION BY key ...) = 1)",
        )


def _key_counts(key: list[str], model_table: str, snapshot_table: str) -> str:
    """Select-list items over a join (see :meth:`Differ._check_keys`): NULL keys among its added
    rows, distinct added keys, the model's rows, the snapshot's rows."""
    keys = ", ".join(quote(k) for k in key)
    any_null = " OR ".join(f"{quote(k)} IS NULL" for k in key)
    distinct_of = keys if len(key) == 1 else f"({keys})"
    return (f"count(*) FILTER (WHERE __retl_op = 'added' AND ({any_null})), "
            f"count(DISTINCT {distinct_of}) FILTER (WHERE __retl_op = 'added'), "
            f"(SELECT count(*) FROM {model_table}), (SELECT count(*) FROM {snapshot_table})")


def _keys_proven(added: int, removed: int, nulls: int, distinct_added: int, model_rows: int, snapshot_rows: int) -> bool:
    """Whether the join's counts prove the model's keys unique and not NULL (see :meth:`Differ._check_keys`)."""
    return not nulls and distinct_added == added and model_rows == added + snapshot_rows - removed


@dataclass(frozen=True)
class Positional:
    """What :meth:`Differ._plan_positional` learns from one scan of a sorted join."""

    join_rows: int
    delta: tuple[int, int, int, int, str, bool, bool, tuple[Span, ...]]  # Delta's counts .. spans


class Differ:
    """Builds the delta table of one sync and advances its snapshot from acknowledgements."""

    def __init__(self, conn: duckdb.DuckDBPyConnection) -> None:
        self.conn = conn
        self._n = 0

    def diff(
        self,
        *,
        model_table: str,
        snapshot_table: str,
        columns: SyncColumns,
        sync_type: str,
        mode: str,
        full_resync: bool = False,
        model: str = "model",
    ) -> Delta:
        """Build the delta; raise DataError (and build nothing) on null or duplicate keys.

        The delta's rows are stored sorted in send order and numbered by position:
        ``Delta.table`` is a view that reads ``__retl_seq`` as ``rowid + 1`` (a seq range is then
        a row range, which DuckDB pushes into the scan). Where each join row is at most one
        delta row (:func:`~reverse_etl.diff.sqlgen.one_row_per_op`), the join itself is stored
        in send order and the delta is its first rows: no second table. Otherwise the delta is
        stored sorted from the join. A sort costs far less than a ``ROW_NUMBER()`` window
        over the same rows. Counts, fingerprint and the key check come from the join.
        """
        self._n += 1
        joined = f"memory.main.{quote(f'__retl_join_{self._n}')}"
        delta = f"memory.main.{quote(f'__retl_delta_{self._n}')}"
        side = snapshot_side(DUCKDB, snapshot_table, columns, lambda t: t)
        positional = one_row_per_op(columns, sync_type, mode, full_resync)
        order = send_order(DUCKDB, columns, sync_type, mode, full_resync) if positional else None
        self.conn.execute(f"CREATE OR REPLACE TABLE {joined} AS "
                          f"{join_sql(DUCKDB, model_table, side, columns, full_resync, order=order)}")
        keep_join = False
        spans: tuple[Span, ...] | None
        try:
            plan = self._plan_positional(joined, model_table, side, columns, sync_type, mode, full_resync, model) \
                if positional else None
            if plan is not None:
                added, changed, removed, rows, fingerprint, split, maybe, spans = plan.delta
            else:
                self._check_keys(joined, model_table, side, columns.key, model)
                added, changed, removed, rows, fingerprint, split, maybe = self._counts(joined, columns, sync_type, mode, full_resync)
            # The view reads all of its table, so the join is the delta only if the mode sends
            # every one of its rows. (Nor may the view filter by rowid: DuckDB 2.0's late
            # materialization of a top-N then fails on it.)
            if plan is not None and plan.join_rows == rows:
                others = [c for c in columns.all if c not in columns.key]
                self.conn.execute(
                    f'CREATE OR REPLACE VIEW {delta} AS SELECT rowid + 1 AS "__retl_seq", j."__retl_op", '
                    f"{action_columns(DUCKDB, sync_type, mode, full_resync, 'j')}, {DUCKDB.cols([*columns.key, *others], 'j')}, "
                    f'j."__retl_hash", j."__retl_old_hash" FROM {joined} AS j'
                )
                keep_join = True  # the delta's rows
            else:  # the same order: the plan's spans hold for the copy too
                stored = f"memory.main.{quote(f'__retl_delta_{self._n}__rows')}"
                query = delta_sql(DUCKDB, joined, side, columns, sync_type, mode, full_resync, numbered=False)
                self.conn.execute(f"CREATE OR REPLACE TABLE {stored} AS {query}")
                self.conn.execute(f'CREATE OR REPLACE VIEW {delta} AS SELECT rowid + 1 AS "__retl_seq", * FROM {stored}')
                if plan is None:
                    spans = spans_of(self.conn.execute(spans_sql(DUCKDB, delta)).fetchone())
        finally:
            if not keep_join:
                self.conn.execute(f"DROP TABLE IF EXISTS {joined}")
        return Delta(delta, columns, added, changed, removed, rows, fingerprint, split=split,
                     holds=holds_rows(sync_type, mode), maybe=maybe, spans=spans)

    def _plan_positional(
        self, joined: str, model_table: str, snapshot_table: str, columns: SyncColumns, sync_type: str, mode: str,
        full_resync: bool, model: str,
    ) -> Positional:
        """The key check (see :meth:`_check_keys`) and the delta's counts, fingerprint and spans
        for a join sorted in send order: one scan of it. Per op, its rows are consecutive, so
        the spans follow from the counts (the held span covers every group holding such rows)."""
        key = columns.key
        actions = {op: (action, kind, ack, order) for op, action, kind, ack, order, _ in action_rows(sync_type, mode, full_resync)}
        keys = ", ".join(quote(k) for k in key)
        sent = ", ".join(DUCKDB.lit(op) for op in actions)
        ops = ("added", "changed", "removed", "maybe", "same")
        row = self.conn.execute(
            "SELECT " + ", ".join(f"count(*) FILTER (WHERE __retl_op = '{op}')" for op in ops) + ", "
            f"{_key_counts(key, model_table, snapshot_table)}, count(*) FILTER (WHERE __retl_op = 'removed' AND __retl_old_hash = {MAYBE_HASH}), "
            f"coalesce(bit_xor(hash({op_case(DUCKDB, sync_type, mode, full_resync, '__retl_op', 'action')}, {keys}, "
            "__retl_hash, __retl_old_hash)) "
            f"FILTER (WHERE __retl_op IN ({sent})), 0) FROM {joined}"
        ).fetchone()
        assert row is not None
        count = dict(zip(ops, (int(v) for v in row[:5]), strict=True))
        nulls, distinct_added, model_rows, snapshot_rows, removed_maybe = (int(v) for v in row[5:10])
        if not _keys_proven(count["added"], count["removed"], nulls, distinct_added, model_rows, snapshot_rows):
            check_keys(self.conn, model_table, key, model)
        per_kind = {"added": 0, "changed": 0, "removed": 0}
        for op, (_, kind, _, _) in actions.items():
            per_kind[kind] += count[op]
        rows = sum(count[op] for op in actions)
        spans: list[Span] = []
        held: list[tuple[int, int]] = []
        first = 1
        for order, ack in enumerate(ACK_KINDS):  # sorted by send order: the ack kinds in turn
            group = [op for op, a in actions.items() if a[3] == order]
            n = sum(count[op] for op in group)
            if not n:
                continue
            spans.append((ack, first, first + n - 1))
            if any(count[op] for op in group if op in ("added", "maybe")) or ("removed" in group and removed_maybe):
                held.append((first, first + n - 1))
            first += n
        if held:
            spans.append((HELD, held[0][0], held[-1][1]))
        split = "changed" in actions and actions["changed"][2] == "insert" and count["changed"] > 0
        maybe = count["maybe"] > 0 or ("removed" in actions and removed_maybe > 0)
        delta = (per_kind["added"], per_kind["changed"], per_kind["removed"], rows, f"{rows}:{int(row[10]):x}", split, maybe,
                 tuple(spans))
        return Positional(join_rows=sum(count.values()), delta=delta)

    def _counts(
        self, joined: str, columns: SyncColumns, sync_type: str, mode: str, full_resync: bool
    ) -> tuple[int, int, int, int, str, bool, bool]:
        """Per kind, total, fingerprint, split and maybe of the delta, from the join: one row per
        delta row (:func:`~reverse_etl.diff.sqlgen.action_join`), no numbering needed."""
        keys = ", ".join(f"j.{quote(k)}" for k in columns.key)
        row = self.conn.execute(
            "SELECT count(*) FILTER (WHERE a.kind = 'added'), count(*) FILTER (WHERE a.kind = 'changed'), "
            "count(*) FILTER (WHERE a.kind = 'removed'), count(*), "
            f"coalesce(bit_xor(hash(a.action, {keys}, j.__retl_hash, j.__retl_old_hash)), 0), "
            "count(*) FILTER (WHERE j.__retl_op = 'changed' AND a.ack = 'insert'), "
            f"count(*) FILTER (WHERE j.__retl_op = 'maybe' OR (j.__retl_op = 'removed' AND j.__retl_old_hash = {MAYBE_HASH})) "
            f"FROM {action_join(DUCKDB, joined, sync_type, mode, full_resync)}"
        ).fetchone()
        assert row is not None
        return (int(row[0]), int(row[1]), int(row[2]), int(row[3]), f"{row[3]}:{row[4]:x}", bool(row[5]), bool(row[6]))

    def _check_keys(self, joined: str, model_table: str, snapshot_table: str, key: list[str], model: str) -> None:
        """Null and duplicate keys, proven from counts the join already made.

        Snapshot keys are unique (the ack keeps them so), so every model row is exactly one
        join row: added, or matched to one snapshot row. With unique model keys, then,
        model rows = added + (snapshot rows - removed), and added keys are distinct. A NULL
        key never matches, so it shows as an added row. Only on failure is the model scanned
        again for examples.
        """
        row = self.conn.execute(
            f"SELECT count(*) FILTER (WHERE __retl_op = 'added'), count(*) FILTER (WHERE __retl_op = 'removed'), "
            f"{_key_counts(key, model_table, snapshot_table)} FROM {joined}"
        ).fetchone()
        assert row is not None
        added, removed, nulls, distinct_added, model_rows, snapshot_rows = (int(v) for v in row)
        if not _keys_proven(added, removed, nulls, distinct_added, model_rows, snapshot_rows):
            check_keys(self.conn, model_table, key, model)

    def hold(self, delta: Delta, snapshot_table: str, lo: int, hi: int) -> None:
        """Before rows ``lo..hi`` are sent: record the added ones as maybe held.

        A row whose request got no answer (a lost reply, a timeout, a crash) may be held by the
        destination. Known to no one, its removal would never be sent once it leaves the model. So,
        in modes that send removals, added rows are recorded before they are sent in the
        snapshot's held table (:func:`held_table`), which the diff reads with the snapshot. The
        snapshot itself stays what the destination is known to hold: an acknowledgement moves an
        accepted row there, and takes a rejected one out of the held table (the destination said
        no: it does not hold it); a row without an answer stays held.
        """
        if not delta.holds:
            return
        key = delta.columns.key
        stored = [*key, *delta.columns.values]
        held = held_table(snapshot_table)
        match_key = " AND ".join(f"s.{quote(k)} = d.{quote(k)}" for k in key)
        self.conn.execute(
            f"INSERT INTO {held} ({', '.join(quote(c) for c in stored)}, __retl_hash) "
            f"SELECT {', '.join('d.' + quote(c) for c in stored)}, {MAYBE_HASH} FROM {delta.table} AS d "
            f"WHERE d.__retl_seq BETWEEN $lo AND $hi AND d.__retl_op = 'added' "
            f"AND NOT EXISTS (SELECT 1 FROM {held} AS s WHERE {match_key})",
            {"lo": lo, "hi": hi},
        )

    def ack(
        self, delta: Delta, snapshot_table: str, lo: int, hi: int, not_accepted: list[int], rejected: Sequence[int] = ()
    ) -> int:
        """Apply the accepted rows of seq range ``[lo, hi]`` to the snapshot, in one transaction.

        ``rejected`` (among ``not_accepted``): rows the destination refused, so does not hold;
        their maybe-held placeholders (see :meth:`hold`) are taken out. Rows not accepted for any
        other reason (no answer) keep theirs.

        Only the statements the chunk needs run (:meth:`Delta.touches`). A DELETE with rows to
        match reads the snapshot's key column (DuckDB joins by hash, the chunk's rows the build
        side; their min/max skips row groups only where keys cluster): a chunk with no row of
        its kind does not pay for it.
        """
        params: dict[str, Any] = {"lo": lo, "hi": hi}
        if not_accepted:
            params["skip"] = not_accepted
        self.conn.execute("BEGIN TRANSACTION")
        try:
            for statement, extra in self._ack_statements(delta, snapshot_table, lo, hi, rejected, skip=bool(not_accepted)):
                self.conn.execute(statement, {**params, **extra})
            self.conn.execute("COMMIT")
        except Exception:
            self.conn.execute("ROLLBACK")
            raise
        return hi - lo + 1 - len(not_accepted)

    def _ack_statements(
        self, delta: Delta, snapshot_table: str, lo: int, hi: int, rejected: Sequence[int] = (), *, skip: bool = True
    ) -> list[tuple[str, dict[str, Any]]]:
        """The statements of :meth:`ack` for this chunk, with their extra parameters.

        Written so that DuckDB reads only the chunk's rows of the delta (its seq range becomes a
        row range of the scan): a semi-join (``EXISTS``) rather than ``DELETE ... USING``, which
        scans every delta row and column; ``$skip`` only when some row was not accepted.
        """
        key = delta.columns.key
        stored = [*key, *delta.columns.values]
        match_key = DUCKDB.match(key, "s", "d")
        rng = "d.__retl_seq BETWEEN $lo AND $hi" + (" AND NOT list_contains($skip, d.__retl_seq)" if skip else "")
        out: list[tuple[str, dict[str, Any]]] = []
        if delta.touches("delete", lo, hi):
            out.append((f"DELETE FROM {snapshot_table} AS s WHERE EXISTS (SELECT 1 FROM {delta.table} AS d WHERE {rng} "
                        f"AND d.__retl_ack = 'delete' AND {match_key} AND s.__retl_hash = d.__retl_old_hash)", {}))
        if delta.touches("replace", lo, hi):
            out.append((f"DELETE FROM {snapshot_table} AS s WHERE EXISTS (SELECT 1 FROM {delta.table} AS d WHERE {rng} "
                        f"AND d.__retl_ack = 'replace' AND {match_key})", {}))
        if (delta.holds or delta.maybe) and delta.touches(HELD, lo, hi):
            # An answered row is no longer maybe held: accepted, it is in the snapshot (or removed);
            # rejected, the destination does not hold it. Unanswered ones stay.
            answered = f"({rng} OR (list_contains($rejected, d.__retl_seq) AND d.__retl_op = 'added'))"
            out.append((f"DELETE FROM {held_table(snapshot_table)} AS s WHERE EXISTS (SELECT 1 FROM {delta.table} AS d "
                        f"WHERE d.__retl_seq BETWEEN $lo AND $hi AND {answered} AND {match_key})", {"rejected": list(rejected)}))
        if delta.touches("insert", lo, hi) or delta.touches("replace", lo, hi):
            # The join half of an audience identity change enters only once its leave half did:
            # if the leave was rejected, the old identity stays and the next run tries both again.
            # That keeps snapshot keys unique, which the key check relies on.
            guard = ""
            if delta.split:
                guard = (f" AND NOT (d.__retl_op = 'changed' AND EXISTS (SELECT 1 FROM {snapshot_table} AS s "
                         f"WHERE {match_key}))")
            out.append((f"INSERT INTO {snapshot_table} ({DUCKDB.cols(stored)}, __retl_hash) SELECT {DUCKDB.cols(stored, 'd')}, "
                        f"d.__retl_hash FROM {delta.table} AS d WHERE {rng} AND d.__retl_ack IN ('insert', 'replace'){guard}", {}))
        return out


__all__ = [
    "DUCKDB", "MAYBE_HASH", "OLD", "Delta", "Differ", "SyncColumns", "action_rows", "check_keys", "held_table", "holds_rows",
    "ident", "outcomes_of", "spans_of",
]
