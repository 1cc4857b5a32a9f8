"""The SQL diff engine: added / changed / removed per mode, acks, and the snapshot invariant."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reverse_etl.diff.engine import Differ, SyncColumns, check_keys
from reverse_etl.errors import DataError
from reverse_etl.state import StateStore
from reverse_etl.state.store import CATALOG

# "a" plays an identifier (a removal must still address the old identity), "b" a plain field.
COLS = SyncColumns(key=["id"], values=["a", "b"], hashed=["a", "b"], identity=["a"])


class Harness:
    def __init__(self, path: Path) -> None:
        self.conn = duckdb.connect(":memory:")
        self.state = StateStore.attach(self.conn, path)
        self.differ = Differ(self.conn)
        self.snapshot = self.state.ensure_snapshot("s", {"id": "VARCHAR"}, {"a": "VARCHAR", "b": "INTEGER"}, ["a", "b"])

    def load(self, rows: list[tuple[Any, ...]]) -> str:
        self.conn.execute("CREATE OR REPLACE TABLE memory.main.model (id VARCHAR, a VARCHAR, b INTEGER)")
        if rows:
            self.conn.executemany("INSERT INTO memory.main.model VALUES (?, ?, ?)", rows)
        return "memory.main.model"

    def diff(self, rows: list[tuple[Any, ...]], type_: str = "records", mode: str = "mirror", full: bool = False) -> Any:
        return self.differ.diff(model_table=self.load(rows), snapshot_table=self.snapshot.table, columns=COLS,
                                sync_type=type_, mode=mode, full_resync=full)

    def delta(self, delta: Any) -> list[tuple[Any, ...]]:
        return self.conn.execute(f"SELECT __retl_kind, __retl_action, id, a, b FROM {delta.table} ORDER BY __retl_seq").fetchall()

    def ack_all(self, delta: Any, reject: tuple[str, ...] = ()) -> None:
        rows = self.conn.execute(f"SELECT __retl_seq, id FROM {delta.table}").fetchall()
        skip = [seq for seq, key in rows if key in reject]
        if delta.rows:
            self.differ.ack(delta, self.snapshot.table, 1, delta.rows, skip)

    def snapshot_rows(self) -> set[tuple[Any, ...]]:
        return set(self.conn.execute(f"SELECT id, a, b FROM {self.snapshot.table}").fetchall())


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path / "state.duckdb")
    yield harness
    harness.conn.close()


def test_first_diff_adds_everything_then_nothing(h: Harness) -> None:
    rows = [("1", "x", 1), ("2", None, 2)]
    delta = h.diff(rows)
    assert (delta.added, delta.changed, delta.removed) == (2, 0, 0)
    h.ack_all(delta)
    assert h.snapshot_rows() == set(rows)
    again = h.diff(rows)
    assert again.rows == 0


def test_changed_and_removed_with_old_values(h: Harness) -> None:
    h.ack_all(h.diff([("1", "x", 1), ("2", "y", 2), ("3", "z", 3)]))
    delta = h.diff([("1", "x", 1), ("2", "Y", 2), ("4", "w", 4)])
    assert h.delta(delta) == [
        ("removed", "remove", "3", "z", None),  # removals go first, with the snapshot's identifiers
        ("changed", "upsert", "2", "Y", 2),
        ("added", "upsert", "4", "w", 4),
    ]


def test_null_and_empty_string_are_different(h: Harness) -> None:
    h.ack_all(h.diff([("1", None, 1)]))
    assert h.diff([("1", "", 1)]).changed == 1
    h.ack_all(h.diff([("1", "", 1)]))
    assert h.diff([("1", None, 1)]).changed == 1


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("upsert", [("changed", "upsert", "2"), ("added", "upsert", "4")]),
        ("update", [("changed", "update", "2"), ("added", "update", "4")]),
        ("insert", [("added", "insert", "4")]),
        ("mirror", [("removed", "remove", "3"), ("changed", "upsert", "2"), ("added", "upsert", "4")]),
    ],
)
def test_record_modes(h: Harness, mode: str, expected: list[tuple[str, str, str]]) -> None:
    h.ack_all(h.diff([("1", "x", 1), ("2", "y", 2), ("3", "z", 3)], mode=mode))
    delta = h.diff([("1", "x", 1), ("2", "Y", 2), ("4", "w", 4)], mode=mode)
    assert [(k, a, i) for k, a, i, _, _ in h.delta(delta)] == expected


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("add", [("added", "join", "2"), ("added", "join", "4")]),
        ("remove", [("removed", "leave", "2"), ("removed", "leave", "4")]),
        # identity change of member 2: the old identity leaves, the new one joins
        ("mirror", [("removed", "leave", "2"), ("removed", "leave", "3"), ("added", "join", "2"), ("added", "join", "4")]),
    ],
)
def test_audience_modes(h: Harness, mode: str, expected: list[tuple[str, str, str]]) -> None:
    h.ack_all(h.diff([("1", "x", 1), ("2", "y", 2), ("3", "z", 3)], type_="audience", mode=mode))
    delta = h.diff([("1", "x", 1), ("2", "Y", 2), ("4", "w", 4)], type_="audience", mode=mode)
    assert [(k, a, i) for k, a, i, _, _ in h.delta(delta)] == expected


def test_audience_identity_change_leaves_old_values(h: Harness) -> None:
    h.ack_all(h.diff([("2", "old@x", 1)], type_="audience", mode="mirror"))
    delta = h.diff([("2", "new@x", 1)], type_="audience", mode="mirror")
    assert [(k, a) for k, _, _, a, _ in h.delta(delta)] == [("removed", "old@x"), ("added", "new@x")]
    h.ack_all(delta)
    assert h.snapshot_rows() == {("2", "new@x", 1)}


def test_rejected_rows_stay_in_the_next_diff(h: Harness) -> None:
    delta = h.diff([("1", "x", 1), ("2", "y", 2)])
    h.ack_all(delta, reject=("2",))
    assert h.snapshot_rows() == {("1", "x", 1)}
    retry = h.diff([("1", "x", 1), ("2", "y", 2)])
    assert [i for _, _, i, _, _ in h.delta(retry)] == ["2"]


def test_rejected_removal_is_retried(h: Harness) -> None:
    h.ack_all(h.diff([("1", "x", 1), ("2", "y", 2)]))
    h.ack_all(h.diff([("1", "x", 1)]), reject=("2",))
    assert h.diff([("1", "x", 1)]).removed == 1


def test_full_resync_resends_unchanged_rows(h: Harness) -> None:
    h.ack_all(h.diff([("1", "x", 1), ("2", "y", 2)]))
    delta = h.diff([("1", "x", 1), ("2", "y", 2)], full=True)
    assert (delta.added, delta.changed, delta.removed) == (0, 2, 0)
    h.ack_all(delta)
    assert h.snapshot_rows() == {("1", "x", 1), ("2", "y", 2)}


def test_events_only_new_keys(h: Harness) -> None:
    h.ack_all(h.diff([("e1", "x", 1)], type_="events", mode="insert"))
    delta = h.diff([("e1", "changed", 1), ("e2", "y", 2)], type_="events", mode="insert")
    assert [(k, a, i) for k, a, i, _, _ in h.delta(delta)] == [("added", "track", "e2")]


def test_fingerprint_moves_with_the_data(h: Harness) -> None:
    a = h.diff([("1", "x", 1)])
    b = h.diff([("1", "x", 1)])
    c = h.diff([("1", "x", 2)])
    assert a.fingerprint == b.fingerprint != c.fingerprint


def test_null_and_duplicate_keys_are_refused_with_examples(h: Harness) -> None:
    table = h.load([("1", "x", 1), (None, "y", 2)])
    with pytest.raises(DataError, match=r"1 row\(s\) have a NULL primary key"):
        check_keys(h.conn, table, ["id"], "m")
    table = h.load([("1", "x", 1), ("1", "y", 2), ("2", "z", 3)])
    with pytest.raises(DataError, match=r"not unique: 1 duplicate row\(s\); e.g. '1' x2"):
        check_keys(h.conn, table, ["id"], "m")


def test_hash_algorithm_change_recomputes_hashes(h: Harness) -> None:
    rows = [("1", "x", 1), ("2", None, 2)]
    h.ack_all(h.diff(rows))
    # Simulate a snapshot written by another hash algorithm: garbage hashes, old algorithm name.
    h.conn.execute(f'UPDATE {h.snapshot.table} SET "__retl_hash" = 12345')
    h.conn.execute(f"UPDATE {CATALOG}._retl_syncs SET hash_algorithm = 'old-algo'")
    h.snapshot = h.state.ensure_snapshot("s", {"id": "VARCHAR"}, {"a": "VARCHAR", "b": "INTEGER"}, ["a", "b"])
    assert h.diff(rows).rows == 0


rows_strategy = st.dictionaries(
    keys=st.text(alphabet="abcdef", min_size=1, max_size=3),
    values=st.tuples(st.one_of(st.none(), st.sampled_from(["", "x", "y"])), st.one_of(st.none(), st.integers(0, 3))),
    max_size=25,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(before=rows_strategy, after=rows_strategy, rejected=st.sets(st.text(alphabet="abcdef", min_size=1, max_size=3), max_size=5))
def test_applying_the_delta_gives_the_new_state(tmp_path_factory: pytest.TempPathFactory, before: dict, after: dict, rejected: set) -> None:
    harness = Harness(tmp_path_factory.mktemp("p") / "state.duckdb")
    try:
        as_rows = lambda d: [(k, v[0], v[1]) for k, v in d.items()]  # noqa: E731
        harness.ack_all(harness.diff(as_rows(before)))
        assert harness.snapshot_rows() == set(as_rows(before))
        # A run where some rows are rejected: the snapshot holds exactly what was accepted ...
        delta = harness.diff(as_rows(after))
        harness.ack_all(delta, reject=tuple(rejected))
        expected = {k: v for k, v in before.items() if k in rejected} | {k: v for k, v in after.items() if k not in rejected}
        expected = {k: v for k, v in expected.items() if k in after or (k in rejected and k in before)}
        assert harness.snapshot_rows() == set(as_rows(expected))
        # ... and the next run converges to the model.
        harness.ack_all(harness.diff(as_rows(after)))
        assert harness.snapshot_rows() == set(as_rows(after))
        assert harness.diff(as_rows(after)).rows == 0
    finally:
        harness.conn.close()


# --- a delta numbered in two steps (Differ.diff(first=N)) --------------------------------------
PLAIN = SyncColumns(key=["id"], values=["a", "b"], hashed=["a", "b"])  # no identity: may be deferred


def whole_and_deferred(h: Harness, before: list[tuple[Any, ...]], after: list[tuple[Any, ...]], mode: str, first: int,
                       type_: str = "records", full: bool = False) -> tuple[Any, Any, list[Any], list[Any]]:
    """The same diff built whole and with only ``first`` rows numbered up front."""
    h.differ.ack(built := h.differ.diff(model_table=h.load(before), snapshot_table=h.snapshot.table, columns=PLAIN,
                                        sync_type=type_, mode="upsert" if type_ == "records" else "add"),
                 h.snapshot.table, 1, max(built.rows, 1), [])
    model = h.load(after)
    kwargs: dict[str, Any] = {"model_table": model, "snapshot_table": h.snapshot.table, "columns": PLAIN,
                              "sync_type": type_, "mode": mode, "full_resync": full}
    whole = h.differ.diff(**kwargs)
    deferred = h.differ.diff(**kwargs, first=first)
    read = "SELECT * EXCLUDE (__retl_seq), __retl_seq FROM {} ORDER BY __retl_seq"
    head = h.conn.execute(read.format(deferred.table)).fetchall()  # before complete(): the first rows only
    h.differ.complete(deferred, deferred.rows)
    return whole, deferred, head, h.conn.execute(read.format(whole.table)).fetchall()


@pytest.mark.parametrize("mode", ["upsert", "mirror", "update", "insert"])
def test_a_deferred_delta_is_the_whole_delta_numbered_in_two_steps(h: Harness, mode: str) -> None:
    before = [(f"k{i:05d}", f"v{i % 7}", i % 5) for i in range(6000)]
    after = [(f"k{i:05d}", f"v{i % 7}", i % 5 + (i % 3 == 0)) for i in range(1500, 9000)]  # removed, changed, added
    whole, deferred, head, rows = whole_and_deferred(h, before, after, mode, first=700)
    assert len(head) == 700 and head == rows[:700]  # the first rows are there at once, numbered as in the whole
    done = h.conn.execute(f"SELECT * EXCLUDE (__retl_seq), __retl_seq FROM {deferred.table} ORDER BY __retl_seq").fetchall()
    assert done == rows and [r[-1] for r in done] == list(range(1, len(rows) + 1))
    assert (deferred.added, deferred.changed, deferred.removed, deferred.rows, deferred.fingerprint, deferred.split) == (
        whole.added, whole.changed, whole.removed, whole.rows, whole.fingerprint, whole.split)
    assert deferred.spans == whole.spans  # complete() gives the whole delta's spans


def test_head_spans_tell_the_truth_for_the_head(h: Harness) -> None:
    before = [(f"k{i:04d}", "v", 1) for i in range(3000)]
    after = [(f"k{i:04d}", "v", 2 if i < 1000 else 1) for i in range(500, 4000)]  # 500 removed, 500 changed, 1000 added
    whole, _, _, _ = whole_and_deferred(h, before, after, "mirror", first=900)
    assert whole.spans is not None
    assert {k: (a, b) for k, a, b in whole.spans} == {"delete": (1, 500), "replace": (501, 1000), "insert": (1001, 2000),
                                                     "held": (1001, 2000)}
    fresh = h.differ.diff(model_table=h.load(after), snapshot_table=h.snapshot.table, columns=PLAIN, sync_type="records",
                          mode="mirror", first=900)
    assert fresh.spans is not None
    assert {k: (a, b) for k, a, b in fresh.spans} == {"delete": (1, 500), "replace": (501, 900)}  # the head's own
    for kind in ("delete", "replace", "insert"):  # within the head, the head's spans and the whole's agree
        for lo, hi in [(1, 300), (301, 600), (601, 900)]:
            assert fresh.touches(kind, lo, hi) == whole.touches(kind, lo, hi), (kind, lo, hi)
    h.differ.complete(fresh, fresh.rows)
    assert fresh.spans == whole.spans


def test_small_deltas_identity_syncs_and_previews_are_built_whole(h: Harness) -> None:
    model = h.load([(f"k{i}", "v", 1) for i in range(50)])
    small = h.differ.diff(model_table=model, snapshot_table=h.snapshot.table, columns=PLAIN, sync_type="records",
                          mode="upsert", first=100)
    identity = h.differ.diff(model_table=model, snapshot_table=h.snapshot.table, columns=COLS, sync_type="records",
                             mode="mirror", first=10)
    for delta in (small, identity):
        assert h.conn.execute(f"SELECT count(*) FROM {delta.table}").fetchone() == (50,)
    assert not h.differ._pending


def test_close_waits_for_a_build_still_running(h: Harness) -> None:
    model = h.load([(f"k{i:05d}", "v", i) for i in range(20000)])
    deferred = h.differ.diff(model_table=model, snapshot_table=h.snapshot.table, columns=PLAIN, sync_type="records",
                             mode="upsert", first=10)
    h.differ.close()  # no complete(): the rows are there all the same once close() returns
    assert h.conn.execute(f"SELECT count(*), max(__retl_seq) FROM {deferred.table}").fetchone() == (20000, 20000)
    assert h.conn.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE '__retl_join%'").fetchone() == (0,)
