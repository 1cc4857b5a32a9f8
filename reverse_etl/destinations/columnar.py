"""Request bodies from Arrow columns, with no Python object per value.

Making a Python object for every value of a million-row delta costs more than the whole SQL
diff, and ``orjson`` can only encode what already is a Python object. So columnar writers
describe each JSON object they send as a small expression tree (:class:`Col`, :class:`Lit`,
:class:`ByAction`, :class:`Obj`), and :class:`JsonEncoder` renders it for every row at once
with an in-process DuckDB over the Arrow chunk (the engine's own JSON writer, in C++, on all
cores). :func:`join_batches` then joins the per-row JSON texts into request bodies, again
without a Python loop per row. Validation (:mod:`reverse_etl.destinations.checks`) runs
before, also vectorised; only rows that fail become Python objects, to say why.

Times are written as ISO 8601 in UTC (``2024-05-01T12:00:00.000000Z``); naive timestamps are
taken as UTC, like :func:`reverse_etl.destinations.base.dumps` does.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from reverse_etl.destinations.chunk import ACTION
from reverse_etl.modeling.model import quote

ISO_UTC = "%Y-%m-%dT%H:%M:%S.%fZ"


@dataclass(frozen=True)
class Col:
    """The value of model column ``column``. ``as_`` converts: text, date or time (ISO 8601)."""

    column: str
    as_: str | None = None  # None (as stored) | "text" | "date" | "time"


@dataclass(frozen=True)
class Lit:
    """A constant JSON value (anything orjson can write)."""

    value: Any


@dataclass(frozen=True)
class ByAction:
    """A value chosen by the row's action (join / leave / remove ...), else ``default``."""

    cases: tuple[tuple[str, Expr], ...]
    default: Expr


@dataclass(frozen=True)
class Obj:
    """A JSON object: ``(key, value)`` pairs in order."""

    fields: tuple[tuple[str, Expr], ...]


Expr = Col | Lit | ByAction | Obj


def sql_string(text: str) -> str:
    """``text`` as a SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def _col_sql(col: Col, schema: pa.Schema) -> str:
    name = quote(col.column)
    kind = schema.field(col.column).type
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return f"decode({name})"  # UTF-8 checked before (checks.not_utf8)
    if col.as_ == "text":
        return f"CAST({name} AS VARCHAR)"
    if pa.types.is_timestamp(kind):
        utc = f"timezone('UTC', {name})" if kind.tz else name
        if col.as_ == "date":
            return f"strftime({utc}, '%Y-%m-%d')"
        return f"strftime({utc}, '{ISO_UTC}')"
    if col.as_ == "time" and pa.types.is_date(kind):
        return f"strftime(CAST({name} AS TIMESTAMP), '{ISO_UTC}')"
    return name


def to_sql(expr: Expr, schema: pa.Schema) -> str:
    """The DuckDB expression that renders ``expr`` as a JSON value for one row of ``schema``."""
    if isinstance(expr, Col):
        return _col_sql(expr, schema)
    if isinstance(expr, Lit):
        return f"{sql_string(orjson.dumps(expr.value).decode())}::JSON"
    if isinstance(expr, ByAction):
        whens = " ".join(f"WHEN {sql_string(action)} THEN to_json({to_sql(e, schema)})" for action, e in expr.cases)
        return f"CASE {quote(ACTION)} {whens} ELSE to_json({to_sql(expr.default, schema)}) END"
    pairs = ", ".join(f"{sql_string(key)}, {to_sql(value, schema)}" for key, value in expr.fields)
    return f"json_object({pairs})"


_ENGINE_LOCK = threading.Lock()  # the warm-up thread and a writer may both ask at once


@cache
def _engine() -> duckdb.DuckDBPyConnection:
    """The process's in-memory DuckDB for rendering JSON. Opening a database costs ~11 ms, a
    connection to an open one (``cursor()``) ~0.01 ms: one per process, one cursor per encoder."""
    return duckdb.connect(":memory:")


def _cursor() -> duckdb.DuckDBPyConnection:
    with _ENGINE_LOCK:
        return _engine().cursor()


class JsonEncoder:
    """Renders one JSON text per row of an Arrow table, on its own connection to an in-memory
    DuckDB (the Arrow chunk is registered on that connection only).

    Thread-safe: one call at a time (the runner stages chunks in a worker thread).
    """

    def __init__(self) -> None:
        self._conn = _cursor()
        self._conn.execute("SET TimeZone = 'UTC'")
        self._lock = threading.Lock()

    def encode(self, table: pa.Table, obj: Obj) -> pa.Array:
        """One JSON object text per row of ``table`` (a string array, row order kept)."""
        if table.num_rows == 0:
            return pa.array([], pa.string())
        query = f"SELECT {to_sql(obj, table.schema)}::VARCHAR AS j FROM __retl_chunk"
        with self._lock:
            self._conn.register("__retl_chunk", table)
            try:
                result = self._conn.sql(query).to_arrow_table()
            finally:
                self._conn.unregister("__retl_chunk")
        return result.column("j").combine_chunks()

    def close(self) -> None:
        self._conn.close()


def warm_up() -> None:
    """Open the process's engine and render one object: DuckDB loads its JSON functions on first
    use (~25 ms), and the engine itself takes ~11 ms to open. See ``Destination.warm_up``."""
    encoder = JsonEncoder()
    try:
        encoder.encode(pa.table({"a": [1]}), Obj((("a", Col("a")),)))
    finally:
        encoder.close()


@dataclass(frozen=True)
class Batch:
    """Rows ``start..end-1`` of the encoded array, joined into one request body."""

    start: int
    end: int
    body: bytes


def join_batches(
    objects: pa.Array, size: int, *, prefix: bytes, suffix: bytes, max_bytes: int | None = None,
) -> tuple[list[Batch], list[int]]:
    """Join ``objects`` (JSON texts) into bodies of at most ``size`` objects and ``max_bytes``.

    Returns the batches and the indexes of objects too large to send even alone.
    """
    n = len(objects)
    if n == 0:
        return [], []
    objects = objects.cast(pa.large_string()) if objects.type != pa.large_string() else objects
    offsets = pa.array([*range(0, n, size), n], pa.int64())
    joined = pc.binary_join(pa.LargeListArray.from_arrays(offsets, objects), pa.scalar(",", pa.large_string())).to_pylist()
    starts = offsets.to_pylist()
    frame = len(prefix) + len(suffix)
    batches: list[Batch] = []
    too_big: list[int] = []
    for i, text in enumerate(joined):
        body = text.encode()
        if max_bytes is None or len(body) + frame <= max_bytes:
            batches.append(Batch(starts[i], starts[i + 1], prefix + body + suffix))
        else:
            _split(objects, starts[i], starts[i + 1], prefix, suffix, max_bytes, batches, too_big)
    return batches, too_big


def _split(
    objects: pa.Array, start: int, end: int, prefix: bytes, suffix: bytes, max_bytes: int,
    batches: list[Batch], too_big: list[int],
) -> None:
    """Greedy split of one oversized batch (rare: only objects of tens of kilobytes get here)."""
    texts = [t.encode() for t in objects.slice(start, end - start).to_pylist()]
    frame = len(prefix) + len(suffix)
    group: list[bytes] = []
    group_start = start
    used = frame
    for i, text in enumerate(texts, start=start):
        if len(text) + frame > max_bytes:
            if group:
                batches.append(Batch(group_start, i, prefix + b",".join(group) + suffix))
            too_big.append(i)
            group, group_start, used = [], i + 1, frame
            continue
        if group and used + len(text) + 1 > max_bytes:
            batches.append(Batch(group_start, i, prefix + b",".join(group) + suffix))
            group, group_start, used = [], i, frame
        group.append(text)
        used += len(text) + (1 if len(group) > 1 else 0)
    if group:
        batches.append(Batch(group_start, end, prefix + b",".join(group) + suffix))


def take_text(table: pa.Table, column: str, indexes: Sequence[int]) -> list[str | None]:
    """Column values of a few rows as text (identifiers for id lists, values for reasons)."""
    values = table.column(column).take(pa.array(indexes, pa.int64())).to_pylist()
    return [None if v is None else v if isinstance(v, str) else str(v) for v in values]
