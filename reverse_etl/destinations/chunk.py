"""What the runner hands a writer: one chunk of the delta, and what the writer answers.

A :class:`DeltaChunk` holds delta rows in send order either as Arrow columns (what the
warehouse hands over without making a Python object per value) or as :class:`DeltaRow`
objects, and converts on demand. Columnar writers (``Writer.COLUMNAR``) build their request
bodies from the Arrow table; row writers read :attr:`DeltaChunk.rows`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

SEQ = "__retl_seq"
ACTION = "__retl_action"


@dataclass(slots=True)
class DeltaRow:
    """One delta row: its place in the send order, what to do with it, and its model values."""

    seq: int
    action: str
    # model column -> value. Remove/leave rows carry the snapshot's key and identifier values
    # (what addresses the old identity); their other columns are None.
    values: dict[str, Any]


@dataclass
class ChunkResult:
    """Per row of a chunk: accepted, rejected by the destination (a data problem), or failed."""

    accepted: list[int] = field(default_factory=list)
    rejected: dict[int, str] = field(default_factory=dict)  # destination said no: data problem
    failed: dict[int, str] = field(default_factory=dict)  # could not deliver: retried next run
    # Rejected rows an earlier attempt of their request may have applied (its answer was lost,
    # timed out or a 5xx): the rejection does not prove the destination lacks them.
    unsure: set[int] = field(default_factory=set)
    # Failed rows whose request the destination refused unread (401/403): certainly not held.
    refused: set[int] = field(default_factory=set)

    def merge(self, other: ChunkResult) -> None:
        self.accepted.extend(other.accepted)
        self.rejected.update(other.rejected)
        self.failed.update(other.failed)
        self.unsure.update(other.unsure)
        self.refused.update(other.refused)

    def reject(self, seqs: Iterable[int], reason: str, answer: Any = None) -> ChunkResult:
        """Record ``seqs`` as rejected for ``reason`` by ``answer`` (a :class:`RawAnswer`, or None
        for a local rejection); unsure if the answer is doubtful. Returns self."""
        seqs = list(seqs)
        self.rejected.update(dict.fromkeys(seqs, reason))
        if getattr(answer, "doubtful", False):
            self.doubt(seqs)
        return self

    def doubt(self, seqs: Iterable[int] | None = None) -> None:
        """The rejected rows (of ``seqs``, else all) become unsure: an earlier attempt of their
        request may have applied them."""
        self.unsure.update(self.rejected.keys() if seqs is None else (s for s in seqs if s in self.rejected))

    @property
    def conclusive_rejections(self) -> set[int]:
        """Rows not accepted that the destination is known not to hold: rejected (unless unsure),
        or refused unread."""
        return (set(self.rejected) - self.unsure) | self.refused


def _array(values: list[Any]) -> pa.Array:
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        # Mixed Python types in one column (only from hand-built rows): send them as text.
        return pa.array([None if v is None else str(v) for v in values], pa.string())


class DeltaChunk:
    """Delta rows in send order, columnar (Arrow) or as rows, converted lazily either way.

    The Arrow table has ``__retl_seq``, ``__retl_action`` and then the model ``columns``.
    """

    def __init__(self, columns: Sequence[str], *, table: pa.Table | None = None, rows: list[DeltaRow] | None = None) -> None:
        if table is None and rows is None:
            raise ValueError("a DeltaChunk needs a table or rows")
        self.columns = list(columns)
        self._table = table
        self._rows = rows

    @classmethod
    def from_rows(cls, rows: Sequence[DeltaRow], columns: Sequence[str] | None = None) -> DeltaChunk:
        """A chunk of ready-made rows (tests, row writers); columns default to the rows' keys."""
        if columns is None:
            columns = list(dict.fromkeys(k for row in rows for k in row.values))
        return cls(columns, rows=list(rows))

    @classmethod
    def from_tuples(cls, columns: Sequence[str], tuples: Sequence[tuple[Any, ...]]) -> DeltaChunk:
        """From ``(seq, action, *values)`` tuples in ``columns`` order."""
        names = list(columns)
        rows = [DeltaRow(seq=t[0], action=t[1], values=dict(zip(names, t[2:], strict=True))) for t in tuples]
        return cls(names, rows=rows)

    def __len__(self) -> int:
        return self._table.num_rows if self._table is not None else len(self._rows or ())

    @property
    def rows(self) -> list[DeltaRow]:
        if self._rows is None:
            assert self._table is not None
            names = self.columns
            self._rows = [
                DeltaRow(seq=r[SEQ], action=r[ACTION], values={n: r[n] for n in names}) for r in self._table.to_pylist()
            ]
        return self._rows

    @property
    def table(self) -> pa.Table:
        if self._table is None:
            rows = self._rows or []
            arrays = [pa.array([r.seq for r in rows], pa.int64()), pa.array([r.action for r in rows], pa.string())]
            arrays += [_array([r.values.get(c) for r in rows]) for c in self.columns]
            self._table = pa.Table.from_arrays(arrays, names=[SEQ, ACTION, *self.columns])
        return self._table

    @property
    def seqs(self) -> list[int]:
        if self._rows is not None:
            return [r.seq for r in self._rows]
        assert self._table is not None
        return self._table.column(SEQ).to_pylist()

    def values_of(self, seqs: Sequence[int], columns: Sequence[str]) -> dict[int, dict[str, Any]]:
        """``columns`` (model columns, or ``__retl_action``) of the rows with these ``seqs``
        (for row errors: only a few rows)."""
        wanted = set(seqs)
        if self._rows is not None:
            return {
                r.seq: {c: r.action if c == ACTION else r.values.get(c) for c in columns} for r in self._rows if r.seq in wanted
            }
        assert self._table is not None
        import pyarrow.compute as pc

        picked = self._table.filter(pc.is_in(self._table.column(SEQ), pa.array(sorted(wanted), pa.int64())))
        return {r[SEQ]: {c: r[c] for c in columns} for r in picked.select([SEQ, *columns]).to_pylist()}
