"""The diff and the snapshot advance inside a pushdown warehouse (PostgreSQL, Snowflake, ...).

The same algorithm as :mod:`reverse_etl.diff.engine` (a narrow full outer join on the key, keys
proven unique from the join's counts, actions expanded through a constant VALUES table), the same
join and delta SQL (:mod:`reverse_etl.diff.sqlgen`), written in the canonical SQL of
:mod:`reverse_etl.warehouse.sql` and generated for the engine by sqlglot.
Join and delta are scratch tables in the warehouse; the runner fetches the delta chunk by chunk
and nothing else leaves the warehouse. An acknowledgement applies the accepted rows of one
chunk to the snapshot in one transaction: deletes and inserts of those rows only.

The row hash is md5 over a text encoding (:func:`reverse_etl.warehouse.sql.text_hash`); the
fingerprint of a plan is md5 over the sorted per-row digests, so it is the same on every run
that would send the same rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reverse_etl.diff.actions import holds_rows
from reverse_etl.diff.engine import Delta, Differ, SyncColumns, spans_of
from reverse_etl.diff.sqlgen import (
    HELD,
    DiffDialect,
    delta_sql,
    held_table,
    join_sql,
    snapshot_side,
    spans_sql,
)
from reverse_etl.errors import DataError
from reverse_etl.warehouse.sql import CANONICAL, q

if TYPE_CHECKING:
    from collections.abc import Sequence

    from reverse_etl.warehouse.sql import SqlSession

# The row hash of a maybe-held snapshot row (see Differ.hold): not an md5 hex digest, so never equal.
MAYBE = "'maybe-held'"


def seq_ranges(seqs: list[int]) -> list[tuple[int, int]]:
    """Sorted, merged runs of consecutive seqs: a whole rejected chunk is one BETWEEN."""
    out: list[tuple[int, int]] = []
    for s in sorted(set(seqs)):
        if out and s == out[-1][1] + 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return out


class SqlDiffer(Differ):
    """:class:`Differ` for a :class:`~reverse_etl.warehouse.sql.SqlSession`."""

    def __init__(self, session: SqlSession) -> None:  # no DuckDB connection: super().__init__ is not for this engine
        self.session = session
        self._n = 0
        self.dialect = DiffDialect(CANONICAL, session.row_hash, MAYBE)

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
        """The delta, numbered in the warehouse (``ROW_NUMBER()``), its counts and fingerprint."""
        s = self.session
        d = self.dialect
        current = snapshot_side(d, snapshot_table, columns, lambda t: s.current(t, columns.key))
        joined = s.scratch("join", join_sql(d, model_table, current, columns, full_resync))
        try:
            self._check_keys(joined, model_table, current, columns.key, model)
            delta = s.scratch(
                "delta", delta_sql(d, joined, current, columns, sync_type, mode, full_resync), index="__retl_seq"
            )
        finally:
            s.drop(joined)
        digest = "md5(" + " || '|' || ".join(
            f"COALESCE(CAST({c} AS TEXT), '~')"
            for c in ['"__retl_seq"', '"__retl_action"', *(q(k) for k in columns.key), '"__retl_hash"', '"__retl_old_hash"']
        ) + ")"
        row = s.query(
            "SELECT count(*) FILTER (WHERE \"__retl_kind\" = 'added'), count(*) FILTER (WHERE \"__retl_kind\" = 'changed'), "
            "count(*) FILTER (WHERE \"__retl_kind\" = 'removed'), count(*), "
            "count(*) FILTER (WHERE \"__retl_op\" = 'changed' AND \"__retl_ack\" = 'insert'), "
            f"count(*) FILTER (WHERE \"__retl_op\" = 'maybe' OR (\"__retl_op\" = 'removed' AND \"__retl_old_hash\" = {MAYBE})), "
            f"md5(COALESCE(string_agg(d, '' ORDER BY d), '')) FROM (SELECT \"__retl_kind\", \"__retl_op\", \"__retl_ack\", "
            f"\"__retl_old_hash\", "
            f"{digest} AS d FROM {delta}) AS t"
        )[0]
        added, changed, removed, rows, split, maybe = (int(v or 0) for v in row[:6])
        spans = s.query(spans_sql(d, delta))  # one row from any engine; none: spans unknown
        return Delta(delta, columns, added, changed, removed, rows, f"{rows}:{row[6]}", split=bool(split),
                     holds=holds_rows(sync_type, mode), maybe=bool(maybe), spans=spans_of(spans[0] if spans else None))

    def _check_keys(self, joined: str, model_table: str, snapshot_table: str, key: list[str], model: str) -> None:
        """Null and duplicate keys from the join's own counts (see :meth:`Differ._check_keys`)."""
        s = self.session
        any_null = " OR ".join(f"{q(k)} IS NULL" for k in key)
        keys = ", ".join(q(k) for k in key)
        row = s.query(
            "SELECT count(*) FILTER (WHERE \"__retl_op\" = 'added'), count(*) FILTER (WHERE \"__retl_op\" = 'removed'), "
            f"count(*) FILTER (WHERE \"__retl_op\" = 'added' AND ({any_null})), "
            f"(SELECT count(*) FROM (SELECT DISTINCT {keys} FROM {joined} WHERE \"__retl_op\" = 'added') AS k), "
            f"(SELECT count(*) FROM {model_table}), (SELECT count(*) FROM {snapshot_table}) FROM {joined}"
        )[0]
        added, removed, nulls, distinct_added, model_rows, snapshot_rows = (int(v or 0) for v in row)
        # A NULL key counts once among DISTINCT keys; so several NULL rows also show as a mismatch.
        if nulls or distinct_added != added or model_rows != added + snapshot_rows - removed:
            self._explain_keys(model_table, key, model)

    def _explain_keys(self, model_table: str, key: list[str], model: str, examples: int = 5) -> None:
        s = self.session
        any_null = " OR ".join(f"{q(k)} IS NULL" for k in key)
        keys = ", ".join(q(k) for k in key)
        label = " + ".join(key)
        nulls = int(s.scalar(f"SELECT count(*) FROM {model_table} WHERE {any_null}") or 0)
        if nulls:
            sample = s.query(f"SELECT * FROM {model_table} WHERE {any_null} LIMIT {examples}")
            raise DataError(
                f"model {model!r}: {nulls} row(s) have a NULL primary key ({label}); e.g. {sample}",
                hint="filter them out in the model (WHERE ... IS NOT NULL) or choose another primary_key",
            )
        dups = s.query(
            f'SELECT {keys}, count(*) AS "n" FROM {model_table} GROUP BY {keys} HAVING count(*) > 1 '
            f'ORDER BY "n" DESC, {keys} LIMIT {examples}'
        )
        if not dups:
            return
        extra = int(s.scalar(
            f"SELECT COALESCE(sum(\"n\" - 1), 0) FROM (SELECT count(*) AS \"n\" FROM {model_table} GROUP BY {keys}) AS g"
        ) or 0)
        shown = ", ".join(f"{r[:-1] if len(r) > 2 else r[0]!r} x{r[-1]}" for r in dups)
        raise DataError(
            f"model {model!r}: primary key ({label}) is not unique: {extra} duplicate row(s); e.g. {shown}",
            hint="deduplicate in the model (e.g. QUALIFY row_number() OVER (PARTITION BY key ...) = 1)",
        )

    def hold(self, delta: Delta, snapshot_table: str, lo: int, hi: int) -> None:
        """Record the added rows of ``lo..hi`` as maybe held before they are sent (see :meth:`Differ.hold`)."""
        if not delta.holds:
            return
        s = self.session
        key, stored = delta.columns.key, [*delta.columns.key, *delta.columns.values]
        held = held_table(snapshot_table)
        cols = ", ".join(q(c) for c in stored)
        picked = ", ".join(f"d.{q(c)}" for c in stored)
        if s.warehouse.APPEND_ONLY:
            on_key = " AND ".join(f"c.{q(k)} = d.{q(k)}" for k in key)
            s.execute(
                f'INSERT INTO {held} ({cols}, "__retl_hash", "__retl_v", "__retl_gone") '
                f"SELECT {picked}, {MAYBE}, {s.next_version()}, FALSE FROM {delta.table} AS d "
                f"LEFT JOIN {s.current(held, key)} AS c ON {on_key} "
                f"WHERE {_in_range('d', lo, hi, [])} AND d.\"__retl_op\" = 'added' AND c.{q(key[0])} IS NULL"
            )
            return
        match_key = " AND ".join(f"s.{q(k)} = d.{q(k)}" for k in key)
        s.execute(
            f'INSERT INTO {held} ({cols}, "__retl_hash") SELECT {picked}, {MAYBE} FROM {delta.table} AS d '
            f"WHERE {_in_range('d', lo, hi, [])} AND d.\"__retl_op\" = 'added' "
            f"AND NOT EXISTS (SELECT 1 FROM {held} AS s WHERE {match_key})"
        )

    def ack(
        self, delta: Delta, snapshot_table: str, lo: int, hi: int, not_accepted: list[int], rejected: Sequence[int] = ()
    ) -> int:
        """Apply the accepted rows of seq range ``[lo, hi]`` to the snapshot, in one transaction
        (``rejected``: see :meth:`Differ.ack`).

        Only the statements the chunk needs run (:meth:`Delta.touches`): each costs a round trip,
        and on engines without indexes a pruned scan of the snapshot. On PostgreSQL each DELETE is
        driven by the chunk's rows (the delta's index on seq) and probes the snapshot's unique key
        index (``after_snapshot``), so its cost follows the chunk, not the snapshot.
        """
        if self.session.warehouse.APPEND_ONLY:
            self._ack_append(delta, snapshot_table, lo, hi, not_accepted, rejected)
            return hi - lo + 1 - len(not_accepted)
        s = self.session
        key = delta.columns.key
        stored = [*key, *delta.columns.values]
        match_key = " AND ".join(f"s.{q(k)} = d.{q(k)}" for k in key)
        rng = _in_range("d", lo, hi, not_accepted)
        with s.transaction():
            if delta.touches("delete", lo, hi):
                s.execute(
                    f"DELETE FROM {snapshot_table} AS s WHERE EXISTS (SELECT 1 FROM {delta.table} AS d WHERE {rng} "
                    f"AND d.\"__retl_ack\" = 'delete' AND {match_key} AND s.\"__retl_hash\" = d.\"__retl_old_hash\")"
                )
            if delta.touches("replace", lo, hi):
                s.execute(
                    f"DELETE FROM {snapshot_table} AS s WHERE EXISTS (SELECT 1 FROM {delta.table} AS d WHERE {rng} "
                    f"AND d.\"__retl_ack\" = 'replace' AND {match_key})"
                )
            if (delta.holds or delta.maybe) and delta.touches(HELD, lo, hi):  # answered rows are no longer maybe held
                s.execute(
                    f"DELETE FROM {held_table(snapshot_table)} AS s WHERE EXISTS (SELECT 1 FROM {delta.table} AS d "
                    f"WHERE {_answered('d', lo, hi, not_accepted, rejected)} AND {match_key})"
                )
            if delta.touches("insert", lo, hi) or delta.touches("replace", lo, hi):
                s.execute(
                    f'INSERT INTO {snapshot_table} ({", ".join(q(c) for c in stored)}, "__retl_hash") '
                    f'SELECT {", ".join("d." + q(c) for c in stored)}, d."__retl_hash" FROM {delta.table} AS d '
                    f"WHERE {rng} AND d.\"__retl_ack\" IN ('insert', 'replace'){self._split_guard(delta, snapshot_table)}"
                )
        return hi - lo + 1 - len(not_accepted)

    @staticmethod
    def _split_guard(delta: Delta, snapshot_table: str) -> str:
        """As in the DuckDB engine: the join half of an identity change waits for its leave half."""
        if not delta.split:
            return ""
        match_key = " AND ".join(f"s.{q(k)} = d.{q(k)}" for k in delta.columns.key)
        return f" AND NOT (d.\"__retl_op\" = 'changed' AND EXISTS (SELECT 1 FROM {snapshot_table} AS s WHERE {match_key}))"

    def _ack_append(
        self, delta: Delta, table: str, lo: int, hi: int, not_accepted: list[int], rejected: Sequence[int]
    ) -> None:
        """The acknowledgement on an append-only engine: one INSERT of new row versions.

        Per accepted row: a ``delete`` writes a tombstone if the snapshot still holds the row it
        removes (same hash), a ``replace`` writes the new version, an ``insert`` writes the row if
        the key is free, or (the join half of an identity change) is freed by its leave half in
        this same chunk. Within one acknowledgement, later steps get later versions.

        The snapshot's current rows are read only when the chunk has deletes or identity changes,
        and then only for the chunk's keys: the window over the log runs on those rows alone. An
        added row's key is free by construction (the diff found it in neither the snapshot nor
        the held rows, and this run alone writes them), so inserts and replaces need no lookup.
        """
        s = self.session
        key, values = delta.columns.key, delta.columns.values
        stored = ", ".join(q(c) for c in [*key, *values])
        projected = [f"d.{q(k)}" for k in key]
        projected += [f"CASE WHEN d.\"__retl_ack\" = 'delete' THEN NULL ELSE d.{q(v)} END" for v in values]
        if delta.touches("delete", lo, hi) or (delta.split and delta.touches("insert", lo, hi)):
            source, accepted = self._append_lookup(delta, table, lo, hi, not_accepted)
        else:
            source, accepted = f"{delta.table} AS d", "d.\"__retl_ack\" IN ('replace', 'insert')"
        if delta.touches("delete", lo, hi) or delta.touches("replace", lo, hi) or delta.touches("insert", lo, hi):
            s.execute(
                f'INSERT INTO {table} ({stored}, "__retl_hash", "__retl_v", "__retl_gone") '
                f"SELECT {', '.join(projected)}, CASE WHEN d.\"__retl_ack\" = 'delete' THEN NULL ELSE d.\"__retl_hash\" END, "
                f"{s.next_version()} + CASE d.\"__retl_ack\" WHEN 'delete' THEN 0 WHEN 'replace' THEN 1 ELSE 2 END, "
                f"d.\"__retl_ack\" = 'delete' "
                f"FROM {source} WHERE {_in_range('d', lo, hi, not_accepted)} AND ({accepted})"
            )
        if (delta.holds or delta.maybe) and delta.touches(HELD, lo, hi):  # answered rows are no longer maybe held
            held = held_table(table)
            s.execute(
                f'INSERT INTO {held} ({stored}, "__retl_hash", "__retl_v", "__retl_gone") '
                f"SELECT {', '.join(f'c.{q(c)}' for c in [*key, *values])}, NULL, {s.next_version()}, TRUE "
                f"FROM {s.current(_keys_of_chunk(held, delta, lo, hi), key)} AS c WHERE EXISTS (SELECT 1 FROM {delta.table} AS d "
                f"WHERE {_answered('d', lo, hi, not_accepted, rejected)} AND {_match(key, 'c', 'd')})"
            )

    def _append_lookup(self, delta: Delta, table: str, lo: int, hi: int, not_accepted: list[int]) -> tuple[str, str]:
        """The chunk joined with the snapshot's current rows of its keys, and which rows are written."""
        key = delta.columns.key
        current = self.session.current(_keys_of_chunk(table, delta, lo, hi), key)
        accepted = (
            f"(d.\"__retl_ack\" = 'delete' AND c.\"__retl_hash\" = d.\"__retl_old_hash\") "
            f"OR d.\"__retl_ack\" = 'replace' "
            f"OR (d.\"__retl_ack\" = 'insert' AND (c.{q(key[0])} IS NULL OR EXISTS (SELECT 1 FROM {delta.table} AS l "
            f"WHERE {_in_range('l', lo, hi, not_accepted)} AND l.\"__retl_ack\" = 'delete' AND {_match(key, 'l', 'd')} "
            f'AND l."__retl_old_hash" = c."__retl_hash")))'
        )
        return f"{delta.table} AS d LEFT JOIN {current} AS c ON {_match(key, 'c', 'd')}", accepted


def _match(key: Sequence[str], left: str, right: str) -> str:
    return " AND ".join(f"{left}.{q(k)} = {right}.{q(k)}" for k in key)


def _keys_of_chunk(table: str, delta: Delta, lo: int, hi: int) -> str:
    """The rows of a log ``table`` (every version) whose key is in the chunk ``lo..hi``: a relation
    to read the current rows of, so the window over versions runs on the chunk's keys alone."""
    log = q("__retl_t")
    return (
        f"(SELECT * FROM {table} AS {log} WHERE EXISTS (SELECT 1 FROM {delta.table} AS k "
        f'WHERE {_in_range("k", lo, hi, [])} AND {_match(delta.columns.key, "k", log)})) AS "__retl_chunk"'
    )


def _in_range(alias: str, lo: int, hi: int, not_accepted: list[int]) -> str:
    """Rows of ``alias`` with seq in ``[lo, hi]`` and not among ``not_accepted``."""
    skipped = "".join(f' AND NOT ({alias}."__retl_seq" BETWEEN {a} AND {b})' for a, b in seq_ranges(not_accepted))
    return f'{alias}."__retl_seq" BETWEEN {int(lo)} AND {int(hi)}{skipped}'


def _among(alias: str, seqs: Sequence[int]) -> str:
    """Rows of ``alias`` whose seq is one of ``seqs`` (as merged ranges)."""
    ranges = seq_ranges(list(seqs))
    return "(" + " OR ".join(f'{alias}."__retl_seq" BETWEEN {a} AND {b}' for a, b in ranges) + ")" if ranges else "FALSE"


def _answered(alias: str, lo: int, hi: int, not_accepted: list[int], rejected: Sequence[int]) -> str:
    """Rows of the chunk whose fate is known: accepted, or (added ones) rejected."""
    refused = f"({_among(alias, rejected)} AND {alias}.\"__retl_op\" = 'added')"
    return f"({_in_range(alias, lo, hi, not_accepted)} OR {refused})"
