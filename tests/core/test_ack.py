"""Acknowledgements touch only what their chunk holds, and chunked acks equal one whole ack.

A delta is numbered delete < replace < insert (see sqlgen.spans_sql); an acknowledgement of a
seq range runs only the statements for the kinds of row in that range. These tests pin that a
chunk of one kind leaves the rows of the other kinds alone, that a chunk spanning kinds applies
all of them, and that skipping never changes the outcome: acknowledging in chunks with the spans
gives the same snapshot as with the spans unknown (every statement in every chunk, as before).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reverse_etl.diff.engine import Delta, held_table
from reverse_etl.diff.sqlgen import HELD
from tests.core.test_diff import Harness as DiffHarness

BEFORE = [("1", "x", 1), ("2", "y", 2), ("3", "z", 3), ("4", "w", 4)]
# 1 and 2 removed (seqs 1-2), 3 changed (seq 3), 5 and 6 added (seqs 4-5)
AFTER = [("3", "Z", 3), ("4", "w", 4), ("5", "v", 5), ("6", "u", 6)]


class Harness(DiffHarness):
    """The diff tests' harness, plus chunked acks and what they would run."""

    def ack(self, delta: Delta, lo: int, hi: int, not_accepted: list[int] | None = None, rejected: list[int] | None = None) -> None:
        self.differ.ack(delta, self.snapshot.table, lo, hi, not_accepted or [], rejected or [])

    def rows(self, table: str | None = None) -> set[tuple[Any, ...]]:
        return set(self.conn.execute(f"SELECT id, a, b FROM {table or self.snapshot.table}").fetchall())

    def statements(self, delta: Delta, lo: int, hi: int) -> list[str]:
        """The verbs and targets an ack of ``lo..hi`` would run (without running them)."""
        planned = self.differ._ack_statements(delta, self.snapshot.table, lo, hi)
        held = held_table(self.snapshot.table)
        return [" ".join(sql.split()[:3]).replace(held, "held").replace(self.snapshot.table, "snapshot") for sql, _ in planned]


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path / "state.duckdb")
    yield harness
    harness.conn.close()


def seeded(h: Harness) -> Delta:
    first = h.diff(BEFORE)
    h.ack(first, 1, first.rows)
    return h.diff(AFTER)


def test_spans_locate_each_kind_of_acknowledgement(h: Harness) -> None:
    delta = seeded(h)
    assert delta.spans == (("delete", 1, 2), ("replace", 3, 3), ("insert", 4, 5), (HELD, 4, 5))
    assert delta.touches("delete", 2, 4) and not delta.touches("delete", 3, 5)
    assert not delta.touches("insert", 1, 3) and delta.touches("insert", 5, 9)


def test_an_insert_only_range_runs_only_the_insert_and_leaves_other_rows_alone(h: Harness) -> None:
    delta = seeded(h)
    assert h.statements(delta, 4, 5) == ["DELETE FROM held", "INSERT INTO snapshot"]
    h.ack(delta, 4, 5)
    # the removed rows (1, 2) and the changed one (3) are as before; the added ones are in
    assert h.rows() == {*BEFORE, ("5", "v", 5), ("6", "u", 6)}
    h.ack(delta, 1, 3)
    assert h.rows() == set(AFTER)


def test_a_removal_only_range_deletes_and_inserts_nothing(h: Harness) -> None:
    delta = seeded(h)
    assert h.statements(delta, 1, 2) == ["DELETE FROM snapshot"]
    h.ack(delta, 1, 2)
    assert h.rows() == {("3", "z", 3), ("4", "w", 4)}


def test_a_range_spanning_every_kind_applies_each(h: Harness) -> None:
    delta = seeded(h)
    assert h.statements(delta, 2, 4) == ["DELETE FROM snapshot", "DELETE FROM snapshot", "DELETE FROM held", "INSERT INTO snapshot"]
    h.ack(delta, 2, 4)
    assert h.rows() == {("1", "x", 1), ("3", "Z", 3), ("4", "w", 4), ("5", "v", 5)}
    h.ack(delta, 1, 1)
    h.ack(delta, 5, 5)
    assert h.rows() == set(AFTER)
    assert h.diff(AFTER).rows == 0


def test_unknown_spans_run_every_statement(h: Harness) -> None:
    delta = dataclasses.replace(seeded(h), spans=None)
    assert h.statements(delta, 4, 5) == ["DELETE FROM snapshot", "DELETE FROM snapshot", "DELETE FROM held", "INSERT INTO snapshot"]


def test_maybe_held_placeholders_go_in_the_chunk_of_their_row(h: Harness) -> None:
    first = h.diff(BEFORE[:2])
    h.differ.hold(first, h.snapshot.table, 1, first.rows)
    h.ack(first, 1, first.rows, not_accepted=[1, 2])  # no answer: both maybe held
    assert h.rows(held_table(h.snapshot.table)) == set(BEFORE[:2])
    delta = h.diff([("1", "x", 1), ("3", "z", 3)])  # 2: removal of a maybe-held row; 1: sent again; 3: added
    assert [s[0] for s in delta.spans or ()] == ["delete", "replace", "insert", HELD]
    for seq in range(1, delta.rows + 1):  # one row per chunk: each answered placeholder goes with it
        h.differ.hold(delta, h.snapshot.table, seq, seq)
        h.ack(delta, seq, seq)
    assert h.rows(held_table(h.snapshot.table)) == set()
    assert h.rows() == {("1", "x", 1), ("3", "z", 3)}


rows_strategy = st.dictionaries(
    keys=st.text(alphabet="abcdef", min_size=1, max_size=2),
    values=st.tuples(st.sampled_from(["x", "y", None]), st.integers(0, 2)),
    max_size=16,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(before=rows_strategy, after=rows_strategy, chunk=st.integers(1, 5), refused=st.sets(st.integers(1, 40), max_size=4),
       mode=st.sampled_from([("records", "mirror"), ("records", "upsert"), ("audience", "mirror")]))
def test_chunked_acks_with_spans_equal_acks_without(
    tmp_path_factory: pytest.TempPathFactory, before: dict, after: dict, chunk: int, refused: set, mode: tuple[str, str]
) -> None:
    outcomes = []
    for known in (True, False):
        harness = Harness(tmp_path_factory.mktemp("p") / "state.duckdb")
        try:
            as_rows = lambda d: [(k, *v) for k, v in d.items()]  # noqa: E731
            first = harness.diff(as_rows(before), *mode)
            if first.rows:
                harness.ack(first, 1, first.rows)
            delta = harness.diff(as_rows(after), *mode)
            delta = delta if known else dataclasses.replace(delta, spans=None)
            for lo in range(1, delta.rows + 1, chunk):
                hi = min(lo + chunk - 1, delta.rows)
                skipped = sorted(s for s in refused if lo <= s <= hi)
                harness.differ.hold(delta, harness.snapshot.table, lo, hi)
                harness.ack(delta, lo, hi, not_accepted=skipped, rejected=skipped[::2])
            outcomes.append((harness.rows(), harness.rows(held_table(harness.snapshot.table))))
        finally:
            harness.conn.close()
    assert outcomes[0] == outcomes[1]
