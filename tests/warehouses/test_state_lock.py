"""The run-long lock on a warehouse's state: one retl process advances a state schema at a time.

The lease (Snowflake, BigQuery, Databricks) is run for real against PostgreSQL, which has MERGE
(the lease statements are canonical SQL, i.e. PostgreSQL's), and its adapter logic against a fake
DB-API per dialect; the SQL each dialect is sent is in the golden files. Spark's file lock is
run for real, across processes. PostgreSQL's own advisory lock is run live.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pytest
import sqlglot

from reverse_etl.config.profiles import StateConfig
from reverse_etl.config.warehouses import PostgresWarehouseConfig
from reverse_etl.errors import StateBusyError
from reverse_etl.state.base import RUN_COLUMNS
from reverse_etl.state.warehouse import SqlStateStore
from reverse_etl.warehouse import adapter_class
from reverse_etl.warehouse.locking import FileLock, LeaseLock
from reverse_etl.warehouse.postgres import PostgresWarehouse
from reverse_etl.warehouse.sql import SqlSession, SqlWarehouse
from tests.warehouses.fakedb import FakeConnection, FakeError
from tests.warehouses.pg import PgServer
from tests.warehouses.test_adapters_golden import CONFIGS, RULES, describe_rule

LEASE_DIALECTS = ["snowflake", "bigquery", "databricks"]
READ_LOCK = r"^select owner, sync, cast\(acquired_at as"


# --- the lease, live on PostgreSQL ----------------------------------------------------------------
@pytest.fixture
def pg_sessions(tmp_path: Path, pg: PgServer, pg_db: str) -> Iterator[list[SqlSession]]:
    """Three sessions (as three processes would have) on one database with a ``_retl`` schema."""
    warehouse = PostgresWarehouse(PostgresWarehouseConfig.model_validate(pg.warehouse(pg_db)), tmp_path)
    contexts = [warehouse.session() for _ in range(3)]
    sessions = [c.__enter__() for c in contexts]
    sessions[0].execute('CREATE SCHEMA IF NOT EXISTS "_retl"')
    yield sessions  # type: ignore[misc]
    for c in contexts:
        c.__exit__(None, None, None)


def lease(session: SqlSession, lease_s: int = 60, heartbeat: bool = False) -> LeaseLock:
    return LeaseLock(session, "_retl", lease_s, session.heartbeat if heartbeat else None)


@pytest.mark.postgres
def test_a_lease_is_claimed_once_and_a_second_process_is_told_who_holds_it(pg_sessions: list[SqlSession]) -> None:
    first, second = lease(pg_sessions[0]), lease(pg_sessions[1])
    assert first.acquire() is None
    first.running("braze traits")
    holder = second.acquire()
    assert holder is not None
    assert (holder.owner, holder.sync) == (pg_sessions[0].owner, "braze traits")
    assert holder.since and holder.until and holder.since < holder.until
    first.release()
    assert second.acquire() is None  # released: the next process gets in at once
    second.release()


@pytest.mark.postgres
def test_the_lease_of_a_killed_process_is_taken_over_after_it_expires(pg_sessions: list[SqlSession]) -> None:
    killed, waiting = lease(pg_sessions[0], lease_s=1), lease(pg_sessions[1])
    assert killed.acquire() is None  # and never released or renewed: the process died
    assert waiting.acquire() is not None
    time.sleep(1.3)
    assert waiting.acquire() is None
    assert not killed.renew(pg_sessions[0])  # had it only stalled, its heartbeat now learns it lost the lock
    killed.release()  # deletes only its own row: the new holder keeps the lock
    assert lease(pg_sessions[2]).acquire() is not None


@pytest.mark.postgres
def test_a_heartbeat_keeps_a_long_run_s_lease_alive(pg_sessions: list[SqlSession]) -> None:
    holder = lease(pg_sessions[0], lease_s=1, heartbeat=True)
    assert holder.acquire() is None
    time.sleep(1.6)  # past the lease: only renewals keep it
    assert lease(pg_sessions[1]).acquire() is not None
    assert not holder.lost
    holder.release()
    assert lease(pg_sessions[1]).acquire() is None


@pytest.mark.postgres
def test_postgres_refusal_names_the_backend_holding_the_advisory_lock(tmp_path: Path, pg: PgServer, pg_db: str) -> None:
    config = PostgresWarehouseConfig.model_validate(pg.warehouse(pg_db))
    with PostgresWarehouse(config, tmp_path).session() as first:
        first.open_state(StateConfig(), tmp_path)
        (pid,) = first.query_native("SELECT pg_backend_pid()")[0]
        with PostgresWarehouse(config, tmp_path).session() as second, \
                pytest.raises(StateBusyError, match=rf"held by PostgreSQL backend pid {pid} \(reverse_etl\)"):
            second.open_state(StateConfig(), tmp_path)


# --- the lease's adapter logic, per dialect, on a fake DB-API --------------------------------------
class Connections:
    """What ``connect()`` hands out: one fake connection per call, sharing the rules."""

    def __init__(self, rules: list[Any], fail_on: str | None = None) -> None:
        self.rules = rules
        self.fail_on = fail_on
        self.made: list[FakeConnection] = []

    def __call__(self, warehouse: Any = None) -> FakeConnection:
        conn = FakeConnection(fail_on=self.fail_on)
        conn.rules = self.rules  # shared: a test may change the answers while the run is open
        self.made.append(conn)
        return conn


def patched(dialect: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, connections: Connections) -> SqlWarehouse:
    cls = adapter_class(dialect)
    monkeypatch.setattr(cls, "connect", lambda self: connections())
    if dialect == "bigquery":
        monkeypatch.setattr(cls, "_client", None)
    warehouse = cls(CONFIGS[dialect], tmp_path)
    assert isinstance(warehouse, SqlWarehouse)
    return warehouse


def rules(dialect: str, lock_row: tuple[Any, ...] | None) -> list[Any]:
    lock = [(READ_LOCK, [lock_row])] if lock_row else []
    return [describe_rule(dialect), *lock, *RULES[2:]]


def mine(row_owner: str) -> tuple[Any, ...]:
    return (row_owner, None, "2026-01-02 03:04:05+00", "2026-01-02 03:09:05+00")


@pytest.mark.parametrize("dialect", LEASE_DIALECTS)
def test_busy_state_names_the_holder_and_its_sync_and_touches_nothing(dialect: str, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    connections = Connections(rules(dialect, ("ci-7:4242:9f8e7d6c", "braze traits", "2026-01-02 03:04:05+00",
                                              "2026-01-02 03:09:05+00")))
    warehouse = patched(dialect, monkeypatch, tmp_path, connections)
    with warehouse.session() as session, pytest.raises(StateBusyError) as caught:
        session.open_state(StateConfig(), tmp_path)
    assert "held by ci-7:4242:9f8e7d6c, running sync 'braze traits'" in str(caught.value)
    assert "lease until 2026-01-02 03:09:05" in str(caught.value)
    sent = connections.made[0].executed
    assert not any("_retl_migrations" in s or "DELETE" in s for s in sent)  # nothing migrated, nobody's lock released


@pytest.mark.parametrize("dialect", LEASE_DIALECTS)
@pytest.mark.parametrize("fails", [False, True])
def test_the_lease_is_released_when_the_run_ends_or_fails(dialect: str, fails: bool, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    connections = Connections([])
    warehouse = patched(dialect, monkeypatch, tmp_path, connections)
    with pytest.raises(RuntimeError) if fails else nullcontext(), warehouse.session() as session:
        connections.rules[:] = rules(dialect, mine(session.owner))
        state = session.open_state(StateConfig(), tmp_path)
        state.start_run("braze traits")
        if fails:
            raise RuntimeError("the destination fell over")
    sent = connections.made[0].executed
    assert sum(s.startswith("MERGE INTO") and "_retl_lock" in s for s in sent) == 1
    assert sent[-1].startswith("DELETE FROM") and "_retl_lock" in sent[-1] and session.owner in sent[-1]
    assert connections.made[0].closed


@pytest.mark.parametrize("dialect", LEASE_DIALECTS)
def test_losing_the_claim_race_is_busy_not_an_error(dialect: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Delta and BigQuery fail the loser of two concurrent MERGEs; the winner is in the row.
    connections = Connections(rules(dialect, mine("winner:1:abc")), fail_on=r"^merge into")
    warehouse = patched(dialect, monkeypatch, tmp_path, connections)
    with warehouse.session() as session, pytest.raises(StateBusyError, match="held by winner:1:abc"):
        session.open_state(StateConfig(), tmp_path)
    lonely = Connections(rules(dialect, None), fail_on=r"^merge into")  # failed, and nobody holds it: a real error
    warehouse = patched(dialect, monkeypatch, tmp_path, lonely)
    with warehouse.session() as session, pytest.raises(FakeError):
        session.open_state(StateConfig(), tmp_path)


@pytest.mark.parametrize("dialect", LEASE_DIALECTS)
def test_the_heartbeat_renews_on_its_own_connection_and_notices_a_takeover(dialect: str, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    connections = Connections([])
    warehouse = patched(dialect, monkeypatch, tmp_path, connections)
    with warehouse.session() as session:
        connections.rules[:] = rules(dialect, mine(session.owner))
        # a 1 s lease (the profile refuses under 30 s), so the heartbeat beats within the test
        state = session.open_state(StateConfig.model_construct(lock_lease=1), tmp_path)
        _wait_for(lambda: len(connections.made) > 1 and any(s.startswith("UPDATE") for s in connections.made[1].executed))
        beat = connections.made[1]
        assert "_retl_lock" in beat.executed[0] and session.owner in beat.executed[0]
        connections.rules[:] = rules(dialect, mine("thief:9:xyz"))  # the lease was taken over meanwhile
        assert session.state_lock is not None
        _wait_for(lambda: session.state_lock is not None and session.state_lock.lost)
        with pytest.raises(StateBusyError, match="taken over"):
            state.start_run("braze traits")
    assert beat.closed


def _wait_for(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


# --- Spark's file lock, for real ----------------------------------------------------------------
def test_file_lock_refuses_a_second_holder_and_names_the_first(tmp_path: Path) -> None:
    path = tmp_path / "wh" / ".retl-state-_retl.lock"
    first, second = FileLock(path, "host:1:aaa"), FileLock(path, "host:2:bbb")
    assert first.acquire() is None
    first.running("odp events")
    holder = second.acquire()
    assert holder is not None and (holder.owner, holder.sync) == ("host:1:aaa", "odp events")
    first.release()
    assert second.acquire() is None
    second.release()
    second.release()  # twice is fine


def test_file_lock_of_a_killed_process_is_free_at_once(tmp_path: Path) -> None:
    path = tmp_path / ".retl-state-_retl.lock"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from reverse_etl.warehouse.locking import FileLock
        lock = FileLock(Path({str(path)!r}), "child:1:ccc")
        assert lock.acquire() is None
        print("held", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        refused = FileLock(path, "me:2:ddd").acquire()
        assert refused is not None and refused.owner == "child:1:ccc"
    finally:
        holder.kill()
        holder.wait()
    mine_ = FileLock(path, "me:2:ddd")
    assert mine_.acquire() is None  # the OS let go with the process: no lease to wait out
    mine_.release()


def test_spark_state_is_held_by_one_run_at_a_time(tmp_path: Path) -> None:
    # The adapter's wiring, with Spark's SQL faked (the file lock is real; it needs no Spark).
    warehouse = adapter_class("spark")(CONFIGS["spark"], tmp_path)
    assert isinstance(warehouse, SqlWarehouse)
    first, second = (SqlSession(warehouse, FakeConnection([describe_rule("spark")])) for _ in range(2))
    first.open_state(StateConfig(), tmp_path)
    assert (tmp_path / ".retl" / "spark-warehouse" / ".retl-state-_retl.lock").exists()  # beside the warehouse's tables
    with pytest.raises(StateBusyError, match=f"held by {first.owner}"):
        second.open_state(StateConfig(), tmp_path)
    first.cleanup()  # the end of the first run
    second.open_state(StateConfig(), tmp_path)
    second.cleanup()


# --- every statement of the lease and the append-only upkeep, per dialect ------------------------
UPKEEP_GOLDEN = Path(__file__).parent / "golden" / "upkeep.sql"
SNAPSHOT_ROW = ("snapshot__s__0f1e2d3c", '["user_id"]', '["email"]', '["email"]', "md5-text/databricks/1", None)
UPKEEP_RULES = [
    (r"^describe _retl\._retl_runs$", [(c, "string") for c in (*RUN_COLUMNS, "__retl_v", "__retl_gone")]),
    (r"^describe _retl\._retl_row_errors$", [(c, "string") for c in ("run_id", "sync", "row_key", "action", "kind",
                                                                       "reason", "at")]),
    (r"^describe", [("user_id", "string"), ("email", "string"), ("__retl_hash", "string"), ("__retl_v", "bigint"),
                    ("__retl_gone", "boolean")]),
    (r"^select snapshot_table, key_columns", [SNAPSHOT_ROW]),
    (r"^select count\(\*\) from _retl\.snapshot__s__0f1e2d3c$", [(100,)]),
    (r"^select count\(\*\) from \(select \* from \(select \*, row_number", [(10,)]),
    (r"^select count\(\*\) from _retl\.snapshot__s__\w+__c\d+$", [(10,)]),
    (r"^select count\(distinct run_id\)", [(5,)]),
]


def upkeep_statements(dialect: str, tmp_path: Path) -> list[str]:
    from tests.warehouses.test_adapters_golden import open_session

    session = open_session(dialect, FakeConnection([*UPKEEP_RULES, (READ_LOCK, [mine(OWNER_GOLDEN)])]), tmp_path)
    lock = LeaseLock(session, "_retl", 300)
    session.statements = []
    lock.renew(session)  # what the heartbeat sends
    if session.warehouse.APPEND_ONLY:
        state = SqlStateStore(session, "_retl")
        state.compact_min_rows = 0
        assert state.compact("s")
        assert state.prune_log("s", keep=2)
    return list(session.statements)


OWNER_GOLDEN = "host:1:t0k3n"


def test_lease_and_upkeep_statements_match_golden_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.warehouses.test_adapters_golden import render

    monkeypatch.setattr("reverse_etl.warehouse.sql.SqlSession.next_version", lambda self: 7069288980000000)
    text = "".join(f"-- {d}\n{render(upkeep_statements(d, tmp_path))}" for d in LEASE_DIALECTS)
    if os.environ.get("RETL_UPDATE_GOLDEN"):
        UPKEEP_GOLDEN.write_text(text)
    assert text == UPKEEP_GOLDEN.read_text()
    for chunk in text.split("\n\n"):
        body = "\n".join(line for line in chunk.splitlines() if not line.startswith("-- "))
        if body.strip() and not body.startswith("INSERT OVERWRITE"):
            assert sqlglot.parse_one(body.rstrip(";"), read="spark" if "`" in body else "snowflake") is not None


@pytest.mark.parametrize("dialect", LEASE_DIALECTS)
def test_the_profile_sets_the_lease_and_the_compaction_thresholds(dialect: str, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    connections = Connections([])
    warehouse = patched(dialect, monkeypatch, tmp_path, connections)
    config = StateConfig.model_validate({"lock_lease": "90s", "compact_ratio": 2.5, "compact_min_rows": 100})
    with warehouse.session() as session:
        connections.rules[:] = rules(dialect, mine(session.owner))
        state = session.open_state(config, tmp_path)
        assert isinstance(session.state_lock, LeaseLock) and session.state_lock.lease_s == 90
        assert (state.compact_ratio, state.compact_min_rows) == (2.5, 100)  # type: ignore[attr-defined]
    claims = [s for s in connections.made[0].executed if s.startswith("MERGE INTO") and "_retl_lock" in s]
    assert claims and "90 SECOND" in claims[0].upper().replace("'", "")


@pytest.mark.parametrize("lease", ["10s", "soon", -5])
def test_a_lease_too_short_or_not_a_duration_is_a_config_error(lease: object) -> None:
    with pytest.raises(ValueError, match=r"lock_lease|duration|negative"):
        StateConfig.model_validate({"lock_lease": lease})
