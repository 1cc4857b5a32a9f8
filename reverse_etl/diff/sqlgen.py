"""The diff's SQL, written once for every engine.

The DuckDB differ (:mod:`reverse_etl.diff.engine`) and the pushdown one
(:mod:`reverse_etl.diff.pushdown`) run the same statements; what differs between engines is
said by a :class:`DiffDialect`: how an identifier and a literal are written, the row hash, and
the hash a maybe-held row carries. The pushdown dialect writes the canonical SQL (PostgreSQL's),
which the session then generates for its engine with sqlglot.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from reverse_etl.diff.actions import action_rows

if TYPE_CHECKING:
    from reverse_etl.diff.engine import SyncColumns

# The kinds of acknowledgement, in send order (the delta is numbered in this order).
ACK_KINDS = ("delete", "replace", "insert")
# Rows whose key may have a maybe-held placeholder: the ones this run holds (added) and earlier
# placeholders sent again (maybe) or removed (see :func:`spans_sql`).
HELD = "held"


@dataclass(frozen=True)
class DiffDialect:
    """What the diff's SQL needs to know of an engine.

    ``name``: the sqlglot dialect the text is written in; ``row_hash(columns, alias)``: the row
    hash expression over ``columns`` (canonical order); ``maybe_hash``: the literal hash of a
    maybe-held row, equal to no real row hash.
    """

    name: str
    row_hash: Callable[[Sequence[str], str | None], str]
    maybe_hash: str

    def q(self, name: str) -> str:
        """``name`` as a quoted identifier (quotes inside escaped by sqlglot)."""
        return exp.to_identifier(name, quoted=True).sql(self.name)

    def lit(self, value: Any) -> str:
        """A literal; strings escaped by sqlglot, never formatted in."""
        return exp.convert(value).sql(self.name)

    def cols(self, names: Sequence[str], alias: str | None = None) -> str:
        prefix = f"{alias}." if alias else ""
        return ", ".join(prefix + self.q(c) for c in names)

    def match(self, key: Sequence[str], left: str, right: str) -> str:
        """Equal keys of two aliases."""
        return " AND ".join(f"{left}.{self.q(k)} = {right}.{self.q(k)}" for k in key)


def held_table(snapshot_table: str) -> str:
    """The maybe-held rows of a snapshot: a table of the same columns, named after it."""
    if snapshot_table.endswith('"'):
        return snapshot_table[:-1] + '__held"'
    return snapshot_table + "__held"


def snapshot_side(d: DiffDialect, snapshot_table: str, columns: SyncColumns, current: Callable[[str], str]) -> str:
    """What the diff compares with: the snapshot's rows and the maybe-held ones (disjoint keys).

    A relation for ``FROM`` (aliased: PostgreSQL wants one on every subquery there).
    """
    cols = d.cols([*columns.key, *columns.values, "__retl_hash"])
    held = held_table(snapshot_table)
    return (f"(SELECT {cols} FROM {current(snapshot_table)} AS __retl_s "
            f"UNION ALL SELECT {cols} FROM {current(held)} AS __retl_h) AS __retl_side")


def join_sql(
    d: DiffDialect, model_table: str, side: str, columns: SyncColumns, full_resync: bool, *, order: str | None = None
) -> str:
    """The delta keys: a full outer join whose snapshot side carries only key + hash.

    Keeping the snapshot side narrow keeps the join's hash table small; the few old values a
    sync needs are fetched afterwards for the delta rows only. ``order``: sorted by it (see
    :func:`send_order`).
    """
    q = d.q
    key = columns.key
    others = [c for c in columns.all if c not in key]
    h, old_h, in_model = q("__retl_hash"), q("__retl_old_hash"), q("__retl_in_model")
    differs = "" if full_resync else (
        f" WHERE o.{h} IS NULL OR n.{in_model} IS NULL OR n.{h} <> o.{h}"
    )
    query = (
        f"SELECT CASE WHEN o.{h} IS NULL THEN 'added' WHEN n.{in_model} IS NULL THEN 'removed' "
        f"WHEN o.{h} = {d.maybe_hash} THEN 'maybe' "
        f"WHEN n.{h} <> o.{h} THEN 'changed' ELSE 'same' END AS {q('__retl_op')}, "
        + ", ".join(f"COALESCE(n.{q(k)}, o.{q(k)}) AS {q(k)}" for k in key)
        + "".join(f", n.{q(c)}" for c in others)
        + f", n.{h} AS {h}, o.{h} AS {old_h} "
        f"FROM (SELECT {d.cols(columns.all)}, {d.row_hash(columns.hashed, None)} AS {h}, "
        f"TRUE AS {in_model} FROM {model_table}) AS n "
        f"FULL OUTER JOIN (SELECT {d.cols(key)}, {h} FROM {side}) AS o ON {d.match(key, 'n', 'o')}{differs}"
    )
    return query if order is None else f"SELECT * FROM ({query}) AS j ORDER BY {order}"


def one_row_per_op(columns: SyncColumns, sync_type: str, mode: str, full_resync: bool) -> bool:
    """Whether each join row is at most one delta row with the join's own values: no op becomes
    two actions (an audience identity change: a leave and a join) and no removal needs the old
    identity from the snapshot. Then the join sorted by :func:`send_order` starts with the delta."""
    ops = [row[0] for row in action_rows(sync_type, mode, full_resync)]
    return len(ops) == len(set(ops)) and not any(c in columns.values for c in columns.identity)


def send_order(d: DiffDialect, columns: SyncColumns, sync_type: str, mode: str, full_resync: bool) -> str:
    """``ORDER BY`` of join rows in send order (as :func:`delta_sql` numbers the delta), the rows
    the mode does not send last. Only where :func:`one_row_per_op`."""
    whens = " ".join(f"WHEN {d.lit(op)} THEN {order}" for op, _, _, _, order, _ in action_rows(sync_type, mode, full_resync))
    return f"CASE {d.q('__retl_op')} {whens} ELSE {len(ACK_KINDS)} END, {d.cols(columns.key)}"


def op_case(d: DiffDialect, sync_type: str, mode: str, full_resync: bool, op: str, field: str) -> str:
    """The ``field`` (action, kind or ack) of a join row whose op is the expression ``op``, as
    a ``CASE`` (what :func:`action_join` adds by a join). Only where :func:`one_row_per_op`."""
    index = {"action": 1, "kind": 2, "ack": 3}[field]
    whens = " ".join(f"WHEN {d.lit(row[0])} THEN {d.lit(row[index])}" for row in action_rows(sync_type, mode, full_resync))
    return f"CASE {op} {whens} END"


def action_columns(d: DiffDialect, sync_type: str, mode: str, full_resync: bool, alias: str) -> str:
    """``__retl_kind``, ``__retl_action`` and ``__retl_ack`` of a join row (see :func:`op_case`)."""
    op = f"{alias}.{d.q('__retl_op')}"
    return ", ".join(f"{op_case(d, sync_type, mode, full_resync, op, field)} AS {d.q(f'__retl_{field}')}"
                     for field in ("kind", "action", "ack"))


def action_join(d: DiffDialect, joined: str, sync_type: str, mode: str, full_resync: bool) -> str:
    """The join rows expanded into the writer's actions (an audience identity change becomes a
    leave and a join) by joining a tiny constant table ``a``: one row per delta row."""
    q = d.q
    # op/action/kind/ack are constants of this package, never user input.
    mapping = ", ".join(
        f"({d.lit(op)}, {d.lit(action)}, {d.lit(kind)}, {d.lit(ack)}, {order}, {d.lit(use_old)})"
        for op, action, kind, ack, order, use_old in action_rows(sync_type, mode, full_resync)
    )
    names = ("op", "action", "kind", "ack", "ord", "use_old")
    return f"{joined} AS j JOIN (VALUES {mapping}) AS a({d.cols(names)}) ON a.{q('op')} = j.{q('__retl_op')}"


def delta_sql(
    d: DiffDialect, joined: str, side: str, columns: SyncColumns, sync_type: str, mode: str, full_resync: bool,
    *, numbered: bool = True,
) -> str:
    """The delta rows, numbered in send order (``__retl_seq``): removals first, then by key.

    ``numbered=False``: the rows sorted in that order, without ``__retl_seq`` (an engine that
    numbers stored rows by position: see :class:`~reverse_etl.diff.engine.Differ`).
    """
    q = d.q
    key = columns.key
    others = [c for c in columns.all if c not in key]
    identity = [c for c in columns.identity if c in columns.values]
    projected = [f"j.{q(k)}" for k in key]
    for c in others:
        if c in identity:
            projected.append(f"CASE WHEN a.{q('use_old')} THEN s.{q(c)} ELSE j.{q(c)} END AS {q(c)}")
        else:
            projected.append(f"j.{q(c)}")
    h, old_h, op = q("__retl_hash"), q("__retl_old_hash"), q("__retl_op")
    old_join = ""
    if identity:
        old_join = (
            f" LEFT JOIN (SELECT {d.cols([*key, *identity])}, {h} FROM {side}) AS s "
            f"ON j.{op} <> 'added' AND {d.match(key, 's', 'j')} AND s.{h} = j.{old_h}"
        )
    rest = (
        f"j.{op}, a.{q('kind')} AS {q('__retl_kind')}, a.{q('action')} AS {q('__retl_action')}, "
        f"a.{q('ack')} AS {q('__retl_ack')}, {', '.join(projected)}, j.{h}, j.{old_h} "
        f"FROM {action_join(d, joined, sync_type, mode, full_resync)}{old_join}"
    )
    order = f"a.{q('ord')}, {d.cols(key, 'j')}"
    if not numbered:
        return f"SELECT {rest} ORDER BY {order}"
    return f"SELECT ROW_NUMBER() OVER (ORDER BY {order}) AS {q('__retl_seq')}, {rest}"


def spans_sql(d: DiffDialect, delta: str) -> str:
    """First and last seq of each kind of acknowledgement (:data:`ACK_KINDS`, then :data:`HELD`).

    One row, NULLs for a kind the delta has none of; read by :func:`spans_from`.
    """
    q = d.q
    seq, ack, op = q("__retl_seq"), q("__retl_ack"), q("__retl_op")
    where = [f"{ack} = {d.lit(kind)}" for kind in ACK_KINDS]
    where.append(f"{op} IN ('added', 'maybe') OR ({op} = 'removed' AND {q('__retl_old_hash')} = {d.maybe_hash})")
    return "SELECT " + ", ".join(
        f"MIN({seq}) FILTER (WHERE {w}), MAX({seq}) FILTER (WHERE {w})" for w in where
    ) + f" FROM {delta}"


def spans_from(row: Sequence[Any] | None) -> dict[str, tuple[int, int]] | None:
    """The answer of :func:`spans_sql` as ``{kind: (first, last)}``; kinds without rows left out.

    ``None`` (no answer): the spans are unknown, and an acknowledgement runs every statement.
    """
    if row is None:
        return None
    out: dict[str, tuple[int, int]] = {}
    for i, kind in enumerate([*ACK_KINDS, HELD]):
        first, last = row[2 * i], row[2 * i + 1]
        if first is not None and last is not None:
            out[kind] = (int(first), int(last))
    return out


__all__ = [
    "ACK_KINDS", "HELD", "DiffDialect", "action_columns", "action_join", "delta_sql", "held_table", "join_sql", "one_row_per_op", "op_case", "send_order", "snapshot_side",
    "spans_from", "spans_sql",
]
