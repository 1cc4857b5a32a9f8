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

from dataclasses import dataclass
from typing import Any

import duckdb
from sqlglot import exp

from reverse_etl.errors import DataError
from reverse_etl.modeling.model import quote
from reverse_etl.sqlbuild import col, ident, row_hash, sql

OLD = "__retl_old__"

# (type, mode) -> {op: [(action, kind, ack), ...]}; ops missing from the map are not sent.
_ACTIONS: dict[tuple[str, str], dict[str, list[tuple[str, str, str]]]] = {
    ("records", "upsert"): {"added": [("upsert", "added", "insert")], "changed": [("upsert", "changed", "replace")]},
    ("records", "update"): {"added": [("update", "added", "insert")], "changed": [("update", "changed", "replace")]},
    ("records", "insert"): {"added": [("insert", "added", "insert")]},
    ("records", "mirror"): {
        "added": [("upsert", "added", "insert")],
        "changed": [("upsert", "changed", "replace")],
        "removed": [("remove", "removed", "delete")],
    },
    ("audience", "add"): {"added": [("join", "added", "insert")], "changed": [("join", "added", "replace")]},
    ("audience", "remove"): {"added": [("leave", "removed", "insert")], "changed": [("leave", "removed", "replace")]},
    # An identity change of a member is a leave of the old identity and a join of the new one.
    ("audience", "mirror"): {
        "added": [("join", "added", "insert")],
        "changed": [("leave", "removed", "delete"), ("join", "added", "insert")],
        "removed": [("leave", "removed", "delete")],
    },
    ("events", "insert"): {"added": [("track", "added", "insert")]},
}
# With --full-resync, rows whose hash did not change are sent again as:
_RESEND: dict[tuple[str, str], tuple[str, str, str]] = {
    ("records", "upsert"): ("upsert", "changed", "replace"),
    ("records", "update"): ("update", "changed", "replace"),
    ("records", "insert"): ("insert", "changed", "replace"),
    ("records", "mirror"): ("upsert", "changed", "replace"),
    ("audience", "add"): ("join", "added", "replace"),
    ("audience", "remove"): ("leave", "removed", "replace"),
    ("audience", "mirror"): ("join", "added", "replace"),
    ("events", "insert"): ("track", "added", "replace"),
}
_ORDER = {"delete": 0, "replace": 1, "insert": 2}


@dataclass(frozen=True)
class SyncColumns:
    """Which model columns a sync keys on, stores in its snapshot, and hashes."""

    key: list[str]
    values: list[str]  # stored in the snapshot (sorted)
    hashed: list[str]  # hashed to detect changes (sorted)

    @property
    def all(self) -> list[str]:
        return list(dict.fromkeys([*self.key, *self.values, *self.hashed]))


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


def check_keys(conn: duckdb.DuckDBPyConnection, model_table: str, key: list[str], model: str, examples: int = 5) -> None:
    """Refuse null or duplicate primary keys, listing example rows."""
    keys = ", ".join(quote(k) for k in key)
    any_null = " OR ".join(f"{quote(k)} IS NULL" for k in key)
    row = conn.execute(
        f"SELECT count(*) FILTER (WHERE {any_null}), count(*), count(DISTINCT ({keys})) FROM {model_table}"
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
    ) -> Delta:
        self._n += 1
        delta = f"memory.main.{quote(f'__retl_delta_{self._n}')}"
        self.conn.execute(f"CREATE OR REPLACE TABLE {delta} AS {self._delta_sql(model_table, snapshot_table, columns, sync_type, mode, full_resync)}")
        counts = self.conn.execute(
            f"SELECT count(*) FILTER (WHERE __retl_kind = 'added'), count(*) FILTER (WHERE __retl_kind = 'changed'), "
            f"count(*) FILTER (WHERE __retl_kind = 'removed'), count(*), "
            f"coalesce(bit_xor(hash(__retl_action, {', '.join(quote(k) for k in columns.key)}, __retl_hash, __retl_old_hash)), 0) "
            f"FROM {delta}"
        ).fetchone()
        assert counts is not None
        return Delta(delta, columns, int(counts[0]), int(counts[1]), int(counts[2]), int(counts[3]), f"{counts[3]}:{counts[4]:x}")

    def _delta_sql(
        self, model_table: str, snapshot_table: str, columns: SyncColumns, sync_type: str, mode: str, full_resync: bool
    ) -> str:
        key, values = columns.key, columns.values
        m = exp.select(*[col(c) for c in columns.all], row_hash(columns.hashed, None).as_("__retl_hash"),
                       exp.true().as_("__retl_in_model")).from_(exp.to_table(model_table, dialect="duckdb"))
        on = exp.and_(*[exp.EQ(this=col(k, "m"), expression=col(k, "s")) for k in key])
        in_model = col("__retl_in_model", "m")
        in_snap = exp.Not(this=exp.Is(this=col("__retl_hash", "s"), expression=exp.null()))
        op = exp.Case(
            ifs=[
                exp.If(this=exp.Not(this=in_snap), true=exp.Literal.string("added")),
                exp.If(this=exp.Is(this=in_model, expression=exp.null()), true=exp.Literal.string("removed")),
                exp.If(this=exp.NEQ(this=col("__retl_hash", "m"), expression=col("__retl_hash", "s")),
                       true=exp.Literal.string("changed")),
            ],
            default=exp.Literal.string("same"),
        )
        projections: list[exp.Expr] = [op.as_("__retl_op")]
        projections += [exp.Coalesce(this=col(k, "m"), expressions=[col(k, "s")]).as_(k) for k in key]
        for c in [c for c in columns.all if c not in key]:
            if c in values:
                projections.append(exp.Case(ifs=[exp.If(this=exp.Is(this=in_model, expression=exp.null()), true=col(c, "s"))],
                                            default=col(c, "m")).as_(c))
            else:
                projections.append(col(c, "m").as_(c))
        projections += [col(c, "s").as_(OLD + c) for c in values]
        projections += [col("__retl_hash", "m").as_("__retl_hash"), col("__retl_hash", "s").as_("__retl_old_hash")]
        joined = (
            exp.select(*projections)
            .from_(m.subquery("m"))
            .join(exp.to_table(snapshot_table, dialect="duckdb").as_("s"), on=on, join_type="full outer")
        )
        if not full_resync:
            joined = joined.where(exp.or_(exp.Not(this=in_snap), exp.Is(this=in_model, expression=exp.null()),
                                          exp.NEQ(this=col("__retl_hash", "m"), expression=col("__retl_hash", "s"))))
        joined_sql = sql(joined)

        branches: list[str] = []
        table = _ACTIONS[(sync_type, mode)]
        for op_name, outcomes in table.items():
            for action, kind, ack in outcomes:
                # The leave half of a changed member speaks for the old identity: send the old values.
                old = values if (op_name == "changed" and ack == "delete") else []
                branches.append(self._branch(op_name, action, kind, ack, old))
        if full_resync:
            action, kind, ack = _RESEND[(sync_type, mode)]
            branches.append(self._branch("same", action, kind, ack, []))
        union = " UNION ALL ".join(branches)
        order = ", ".join(quote(k) for k in key)
        return (
            f"WITH d AS ({joined_sql}) "
            f"SELECT row_number() OVER (ORDER BY __retl_order, {order}) AS __retl_seq, * EXCLUDE (__retl_order) "
            f"FROM ({union}) ORDER BY __retl_seq"
        )

    @staticmethod
    def _branch(op: str, action: str, kind: str, ack: str, use_old: list[str]) -> str:
        # op/action/kind/ack are this module's constants, never user input; columns are quoted.
        replace = ""
        if use_old:
            replace = " REPLACE (" + ", ".join(f"{quote(OLD + c)} AS {quote(c)}" for c in use_old) + ")"
        return (
            f"SELECT {_ORDER[ack]} AS __retl_order, '{kind}' AS __retl_kind, '{action}' AS __retl_action, "
            f"'{ack}' AS __retl_ack, * EXCLUDE (__retl_op){replace} FROM d WHERE __retl_op = '{op}'"
        )

    def ack(self, delta: Delta, snapshot_table: str, lo: int, hi: int, not_accepted: list[int]) -> int:
        """Apply the accepted rows of seq range ``[lo, hi]`` to the snapshot, in one transaction."""
        key = delta.columns.key
        stored = [*key, *delta.columns.values]
        match_key = " AND ".join(f"s.{quote(k)} = d.{quote(k)}" for k in key)
        rng = "d.__retl_seq BETWEEN $lo AND $hi AND NOT list_contains($skip, d.__retl_seq)"
        params: dict[str, Any] = {"lo": lo, "hi": hi, "skip": not_accepted}
        cols = ", ".join(quote(c) for c in stored)
        self.conn.execute("BEGIN TRANSACTION")
        try:
            self.conn.execute(
                f"DELETE FROM {snapshot_table} AS s USING {delta.table} AS d WHERE {rng} AND d.__retl_ack = 'delete' "
                f"AND {match_key} AND s.__retl_hash = d.__retl_old_hash",
                params,
            )
            self.conn.execute(
                f"DELETE FROM {snapshot_table} AS s USING {delta.table} AS d WHERE {rng} AND d.__retl_ack = 'replace' AND {match_key}",
                params,
            )
            self.conn.execute(
                f"INSERT INTO {snapshot_table} ({cols}, __retl_hash) SELECT {', '.join('d.' + quote(c) for c in stored)}, "
                f"d.__retl_hash FROM {delta.table} AS d WHERE {rng} AND d.__retl_ack IN ('insert', 'replace')",
                params,
            )
            self.conn.execute("COMMIT")
        except Exception:
            self.conn.execute("ROLLBACK")
            raise
        return hi - lo + 1 - len(not_accepted)


__all__ = ["OLD", "Delta", "Differ", "SyncColumns", "check_keys", "ident"]
