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

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb

from reverse_etl.errors import DataError
from reverse_etl.modeling.model import quote
from reverse_etl.sqlbuild import ident, row_hash, sql

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

# Maybe-held rows (see Differ.hold) live beside the snapshot, in ``held_table(snapshot)``, with this
# row hash. It equals no real hash (DuckDB's hash of a struct is never 1 in practice; a sync without
# hashed columns hashes to 0), so such a row is never "same": while in the model it is sent again
# (as added), and once gone from the model its removal is sent.
MAYBE_HASH = 1


def held_table(snapshot_table: str) -> str:
    """The maybe-held rows of a snapshot: a table of the same columns, named after it."""
    if snapshot_table.endswith('"'):
        return snapshot_table[:-1] + '__held"'
    return snapshot_table + "__held"


def snapshot_side(snapshot_table: str, columns: SyncColumns, current: Callable[[str], str] = lambda t: t) -> str:
    """What the diff compares with: the snapshot's rows and the maybe-held ones (disjoint keys).

    A relation for ``FROM`` (aliased: PostgreSQL wants one on every subquery there).
    """
    cols = ", ".join(quote(c) for c in [*columns.key, *columns.values, "__retl_hash"])
    held = held_table(snapshot_table)
    return (f"(SELECT {cols} FROM {current(snapshot_table)} AS __retl_s "
            f"UNION ALL SELECT {cols} FROM {current(held)} AS __retl_h) AS __retl_side")


def outcomes_of(sync_type: str, mode: str, full_resync: bool) -> list[tuple[str, str, str, str]]:
    """(op, action, kind, ack) rows of the mode's action table; a maybe-held row is sent as an
    added one would be, and replaces its placeholder."""
    actions = _ACTIONS[(sync_type, mode)]
    out = [(op, *o) for op, items in actions.items() for o in items]
    out += [("maybe", action, kind, "replace") for action, kind, _ in actions.get("added", [])]
    if full_resync:
        out.append(("same", *_RESEND[(sync_type, mode)]))
    return out


def action_rows(sync_type: str, mode: str, full_resync: bool) -> list[tuple[str, str, str, str, int, bool]]:
    """(op, action, kind, ack, send order, use_old) rows of the constant table a delta joins.

    A removal, and the leave half of a changed audience member, speak for the old identity:
    they are sent with the snapshot's identifier values (``use_old``).
    """
    return [
        (op, action, kind, ack, _ORDER[ack], op == "removed" or (op == "changed" and ack == "delete"))
        for op, action, kind, ack in outcomes_of(sync_type, mode, full_resync)
    ]


def holds_rows(sync_type: str, mode: str) -> bool:
    """Whether rows are held before sending: only modes that send removals need to know which
    rows the destination may hold."""
    return "removed" in _ACTIONS[(sync_type, mode)]


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
        """Build the delta table; raise DataError (and build nothing) on null or duplicate keys."""
        self._n += 1
        joined = f"memory.main.{quote(f'__retl_join_{self._n}')}"
        delta = f"memory.main.{quote(f'__retl_delta_{self._n}')}"
        side = snapshot_side(snapshot_table, columns)
        self.conn.execute(f"CREATE OR REPLACE TABLE {joined} AS {self._join_sql(model_table, side, columns, full_resync)}")
        try:
            self._check_keys(joined, model_table, side, columns.key, model)
            self.conn.execute(f"CREATE OR REPLACE TABLE {delta} AS {self._delta_sql(joined, side, columns, sync_type, mode, full_resync)}")
        finally:
            self.conn.execute(f"DROP TABLE IF EXISTS {joined}")
        keys = ", ".join(quote(k) for k in columns.key)
        counts = self.conn.execute(
            f"SELECT count(*) FILTER (WHERE __retl_kind = 'added'), count(*) FILTER (WHERE __retl_kind = 'changed'), "
            f"count(*) FILTER (WHERE __retl_kind = 'removed'), count(*), "
            f"coalesce(bit_xor(hash(__retl_action, {keys}, __retl_hash, __retl_old_hash)), 0), "
            f"count(*) FILTER (WHERE __retl_op = 'changed' AND __retl_ack = 'insert'), "
            f"count(*) FILTER (WHERE __retl_op = 'maybe' OR (__retl_op = 'removed' AND __retl_old_hash = {MAYBE_HASH})) "
            f"FROM {delta}"
        ).fetchone()
        assert counts is not None
        return Delta(delta, columns, int(counts[0]), int(counts[1]), int(counts[2]), int(counts[3]),
                     f"{counts[3]}:{counts[4]:x}", split=bool(counts[5]), holds=holds_rows(sync_type, mode),
                     maybe=bool(counts[6]))

    def _check_keys(self, joined: str, model_table: str, snapshot_table: str, key: list[str], model: str) -> None:
        """Null and duplicate keys, proven from counts the join already made.

        Snapshot keys are unique (the ack keeps them so), so every model row is exactly one
        join row: added, or matched to one snapshot row. With unique model keys, then,
        model rows = added + (snapshot rows - removed), and added keys are distinct. A NULL
        key never matches, so it shows as an added row. Only on failure is the model scanned
        again for examples.
        """
        any_null = " OR ".join(f"{quote(k)} IS NULL" for k in key)
        keys = ", ".join(quote(k) for k in key)
        distinct_of = keys if len(key) == 1 else f"({keys})"
        row = self.conn.execute(
            f"SELECT count(*) FILTER (WHERE __retl_op = 'added'), count(*) FILTER (WHERE __retl_op = 'removed'), "
            f"count(*) FILTER (WHERE __retl_op = 'added' AND ({any_null})), "
            f"count(DISTINCT {distinct_of}) FILTER (WHERE __retl_op = 'added'), "
            f"(SELECT count(*) FROM {model_table}), (SELECT count(*) FROM {snapshot_table}) FROM {joined}"
        ).fetchone()
        assert row is not None
        added, removed, nulls, distinct_added, model_rows, snapshot_rows = (int(v) for v in row)
        if nulls or distinct_added + nulls != added or model_rows != added + snapshot_rows - removed:
            check_keys(self.conn, model_table, key, model)

    def _join_sql(self, model_table: str, snapshot_table: str, columns: SyncColumns, full_resync: bool) -> str:
        """The delta keys: a full outer join whose snapshot side carries only key + hash.

        Keeping the snapshot side narrow keeps the join's hash table small; the few old
        values a sync needs are fetched afterwards for the delta rows only.
        """
        q = quote
        key = columns.key
        keys = ", ".join(q(k) for k in key)
        others = [c for c in columns.all if c not in key]
        new_hash = sql(row_hash(columns.hashed, None))
        on_key = " AND ".join(f"n.{q(k)} = o.{q(k)}" for k in key)
        differs = "" if full_resync else (
            " WHERE o.__retl_hash IS NULL OR n.__retl_in_model IS NULL OR n.__retl_hash <> o.__retl_hash"
        )
        return (
            "SELECT CASE WHEN o.__retl_hash IS NULL THEN 'added' WHEN n.__retl_in_model IS NULL THEN 'removed' "
            f"WHEN o.__retl_hash = {MAYBE_HASH} THEN 'maybe' "
            "WHEN n.__retl_hash <> o.__retl_hash THEN 'changed' ELSE 'same' END AS __retl_op, "
            + ", ".join(f"coalesce(n.{q(k)}, o.{q(k)}) AS {q(k)}" for k in key)
            + "".join(f", n.{q(c)}" for c in others)
            + ", n.__retl_hash AS __retl_hash, o.__retl_hash AS __retl_old_hash "
            f"FROM (SELECT {', '.join(q(c) for c in columns.all)}, {new_hash} AS __retl_hash, true AS __retl_in_model "
            f"FROM {model_table}) AS n "
            f"FULL OUTER JOIN (SELECT {keys}, __retl_hash FROM {snapshot_table}) AS o ON {on_key}{differs}"
        )

    def _delta_sql(
        self, joined: str, snapshot_table: str, columns: SyncColumns, sync_type: str, mode: str, full_resync: bool
    ) -> str:
        """Expand each join row into the writer's actions (an audience identity change becomes a
        leave and a join) by joining a tiny constant table, and number the rows in send order."""
        q = quote
        key = columns.key
        others = [c for c in columns.all if c not in key]
        # op/action/kind/ack are this module's constants, never user input.
        mapping = ", ".join(
            f"('{op}', '{action}', '{kind}', '{ack}', {order}, {'true' if use_old else 'false'})"
            for op, action, kind, ack, order, use_old in action_rows(sync_type, mode, full_resync)
        )
        identity = [c for c in columns.identity if c in columns.values]
        projected = [f"j.{q(k)}" for k in key]
        for c in others:
            if c in identity:
                projected.append(f"CASE WHEN a.use_old THEN s.{q(c)} ELSE j.{q(c)} END AS {q(c)}")
            else:
                projected.append(f"j.{q(c)}")
        old_join = ""
        if identity:
            on_old = " AND ".join(f"s.{q(k)} = j.{q(k)}" for k in key)
            old_join = (
                f" LEFT JOIN (SELECT {', '.join(q(c) for c in [*key, *identity])}, __retl_hash FROM {snapshot_table}) AS s "
                f"ON j.__retl_op <> 'added' AND {on_old} AND s.__retl_hash = j.__retl_old_hash"
            )
        order = ", ".join(f"j.{q(k)}" for k in key)
        return (
            f"SELECT row_number() OVER (ORDER BY a.ord, {order}) AS __retl_seq, j.__retl_op, a.kind AS __retl_kind, "
            f"a.action AS __retl_action, a.ack AS __retl_ack, {', '.join(projected)}, "
            "j.__retl_hash, j.__retl_old_hash "
            f"FROM {joined} AS j JOIN (VALUES {mapping}) AS a(op, action, kind, ack, ord, use_old) ON a.op = j.__retl_op"
            f"{old_join} ORDER BY __retl_seq"
        )

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
        """
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
            if delta.holds or delta.maybe:
                # An answered row is no longer maybe held: accepted, it is in the snapshot (or removed);
                # rejected, the destination does not hold it. Unanswered ones stay.
                answered = f"({rng} OR (list_contains($rejected, d.__retl_seq) AND d.__retl_op = 'added'))"
                self.conn.execute(
                    f"DELETE FROM {held_table(snapshot_table)} AS s USING {delta.table} AS d "
                    f"WHERE d.__retl_seq BETWEEN $lo AND $hi AND {answered} AND {match_key}",
                    {**params, "rejected": list(rejected)},
                )
            # The join half of an audience identity change enters only once its leave half did:
            # if the leave was rejected, the old identity stays and the next run tries both again.
            # That keeps snapshot keys unique, which the key check relies on.
            guard = ""
            if delta.split:
                guard = (
                    f" AND NOT (d.__retl_op = 'changed' AND EXISTS (SELECT 1 FROM {snapshot_table} AS s "
                    f"WHERE {match_key}))"
                )
            self.conn.execute(
                f"INSERT INTO {snapshot_table} ({cols}, __retl_hash) SELECT {', '.join('d.' + quote(c) for c in stored)}, "
                f"d.__retl_hash FROM {delta.table} AS d WHERE {rng} AND d.__retl_ack IN ('insert', 'replace'){guard}",
                params,
            )
            self.conn.execute("COMMIT")
        except Exception:
            self.conn.execute("ROLLBACK")
            raise
        return hi - lo + 1 - len(not_accepted)


__all__ = ["MAYBE_HASH", "OLD", "held_table", "snapshot_side", "Delta", "Differ", "SyncColumns", "check_keys", "holds_rows", "ident", "outcomes_of"]
