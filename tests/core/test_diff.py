"""The SQL diff engine: added / changed / removed per mode, acks, and the snapshot invariant."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reverse_etl.diff.engine import DUCKDB, MAYBE_HASH, Differ, SyncColumns, check_keys, held_table, spans_of
from reverse_etl.diff.sqlgen import HELD, delta_sql, join_sql, snapshot_side, spans_sql
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


# --- seqs are positions in the sorted delta ------------------------------------------------------
PLAIN = SyncColumns(key=["id"], values=["a", "b"], hashed=["a", "b"])


def numbered_by_window(h: Harness, columns: SyncColumns, sync_type: str, mode: str, full: bool) -> list[Any]:
    """The same delta numbered by ``ROW_NUMBER()`` over the send order (as the pushdown engines do)."""
    side = snapshot_side(DUCKDB, h.snapshot.table, columns, lambda t: t)
    h.conn.execute(f"CREATE OR REPLACE TABLE memory.main.j AS {join_sql(DUCKDB, 'memory.main.model', side, columns, full)}")
    query = delta_sql(DUCKDB, "memory.main.j", side, columns, sync_type, mode, full)
    names = "__retl_seq, __retl_kind, __retl_action, __retl_ack, id, a, b, __retl_hash, __retl_old_hash"
    return h.conn.execute(f"SELECT {names} FROM ({query}) ORDER BY __retl_seq").fetchall()


@pytest.mark.parametrize(("sync_type", "mode", "columns", "full"), [
    # the join stored in send order is the delta (one delta row per join row)
    ("records", "upsert", PLAIN, False), ("records", "mirror", PLAIN, False), ("records", "update", PLAIN, False),
    ("records", "insert", PLAIN, False), ("audience", "add", PLAIN, False), ("records", "mirror", PLAIN, True),
    # the delta stored sorted: a changed member is a leave and a join; removals need old identity values
    ("audience", "mirror", PLAIN, False), ("audience", "mirror", COLS, False),
])
def test_seq_is_the_position_in_send_order_across_row_groups_and_threads(
    h: Harness, sync_type: str, mode: str, columns: SyncColumns, full: bool
) -> None:
    h.conn.execute("SET threads = 4")  # a parallel sort and insert, over several row groups (122,880 rows each)
    h.conn.execute("CREATE OR REPLACE TABLE memory.main.model AS SELECT 'k' || lpad(i::VARCHAR, 7, '0') AS id, "
                   "'v' || (i % 7) AS a, (i % 5)::INTEGER AS b FROM range(60000, 360000) t(i) ORDER BY hash(i)")
    h.conn.execute(f"INSERT INTO {h.snapshot.table} (id, a, b, __retl_hash) SELECT 'k' || lpad(i::VARCHAR, 7, '0'), "
                   "'v' || (i % 7), (i % 5 + (i % 3 = 0)::INTEGER)::INTEGER, 0 FROM range(0, 120000) t(i)")
    # maybe held: some still in the model (sent again), some gone from it (removed)
    h.conn.execute(f"INSERT INTO {held_table(h.snapshot.table)} (id, a, b, __retl_hash) SELECT 'k' || lpad(i::VARCHAR, 7, '0'), "
                   f"'v', 1, {MAYBE_HASH} FROM (SELECT * FROM range(300000, 300500) UNION ALL SELECT * FROM range(400000, 400300)) t(i)")
    delta = h.differ.diff(model_table="memory.main.model", snapshot_table=h.snapshot.table, columns=columns,
                          sync_type=sync_type, mode=mode, full_resync=full)
    names = "__retl_seq, __retl_kind, __retl_action, __retl_ack, id, a, b, __retl_hash, __retl_old_hash"
    stored = h.conn.execute(f"SELECT {names} FROM {delta.table} ORDER BY __retl_seq").fetchall()
    assert len(stored) == delta.rows > 200_000
    assert [r[0] for r in stored] == list(range(1, delta.rows + 1))
    assert stored == numbered_by_window(h, columns, sync_type, mode, full)
    lo, hi = 123_000, 125_500  # a chunk across a row group boundary is exactly its seqs
    chunk = h.conn.execute(f"SELECT {names} FROM {delta.table} WHERE __retl_seq BETWEEN ? AND ? ORDER BY __retl_seq",
                           [lo, hi]).fetchall()
    assert chunk == stored[lo - 1 : hi]
    # counts, fingerprint and spans (positional: from per-op counts) agree with a scan of the delta
    kinds = dict(h.conn.execute(f"SELECT __retl_kind, count(*) FROM {delta.table} GROUP BY ALL").fetchall())
    assert (delta.added, delta.changed, delta.removed) == (kinds.get("added", 0), kinds.get("changed", 0), kinds.get("removed", 0))
    xor = h.conn.execute(f"SELECT coalesce(bit_xor(hash(__retl_action, id, __retl_hash, __retl_old_hash)), 0) FROM {delta.table}").fetchone()
    assert xor is not None and delta.fingerprint == f"{delta.rows}:{int(xor[0]):x}"
    scanned = {k: (a, b) for k, a, b in spans_of(h.conn.execute(spans_sql(DUCKDB, delta.table)).fetchone()) or ()}
    assert delta.spans is not None
    claimed = {k: (a, b) for k, a, b in delta.spans}
    assert {k: v for k, v in claimed.items() if k != HELD} == {k: v for k, v in scanned.items() if k != HELD}
    if HELD in scanned:  # the held span may be wider (whole groups), never narrower
        assert claimed[HELD][0] <= scanned[HELD][0] and scanned[HELD][1] <= claimed[HELD][1]
    else:
        assert HELD not in claimed
    # one table holds the delta's rows (the sorted join itself, or the sorted delta with the join dropped)
    assert h.conn.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE '__retl_%'").fetchone() == (1,)
