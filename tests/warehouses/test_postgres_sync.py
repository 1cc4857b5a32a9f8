"""The sync suite against a real PostgreSQL: diff pushdown, state in ``_retl``, and ``state: local``.

The end-to-end and crash tests of ``tests/core`` run here unchanged, with their project writer
pointed at a fresh PostgreSQL database (models compiled to PostgreSQL, run as temp views there)
and their snapshot reader reading the snapshot where it lives. Each runs twice: with the state
in the warehouse (the diff runs in PostgreSQL, only the delta is fetched) and with
``state: local`` (the model is pulled into local DuckDB and diffed there).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml

import reverse_etl
from reverse_etl.sandbox import SandboxServer
from tests.conftest import braze_destination
from tests.core import test_crash, test_sync_e2e
from tests.helpers import audience_sync, records_sync, set_model, values_sql, write_project
from tests.warehouses.pg import PgServer

pytestmark = pytest.mark.postgres

E2E = [f for name, f in inspect.getmembers(test_sync_e2e, inspect.isfunction) if name.startswith("test_")]


def pg_snapshot_keys(pg: PgServer, dbname: str) -> Callable[[Path, str], set[str]]:
    def read(root: Path, sync: str) -> set[str]:
        with pg.connect(dbname) as conn:
            exists = conn.execute("SELECT to_regclass('\"_retl\".\"_retl_syncs\"') IS NOT NULL").fetchone()
            if not exists or not exists[0]:
                return set()
            row = conn.execute('SELECT snapshot_table FROM "_retl"."_retl_syncs" WHERE sync = %s', [sync]).fetchone()
            if not row:
                return set()
            return {r[0] for r in conn.execute(f'SELECT user_id FROM "_retl"."{row[0]}"').fetchall()}

    return read


@pytest.fixture(params=["warehouse", "local"])
def on_postgres(request: pytest.FixtureRequest, pg: PgServer, pg_db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Points the core suite's helpers at PostgreSQL; yields the state mode."""
    mode = request.param

    def write(root: Path, **kwargs: Any) -> Path:
        extra = dict(kwargs.pop("target_extra", None) or {})
        extra["warehouse"] = pg.warehouse(pg_db)
        if mode == "local":
            extra["state"] = "local"
        return write_project(root, target_extra=extra, **kwargs)

    for module in (test_sync_e2e, test_crash):
        monkeypatch.setattr(module, "write_project", write)
    if mode == "warehouse":
        reader = pg_snapshot_keys(pg, pg_db)
        monkeypatch.setattr(test_sync_e2e, "snapshot_keys", reader)
        monkeypatch.setattr(test_crash, "snapshot_keys", reader)
    yield mode


@pytest.mark.parametrize("case", E2E, ids=[f.__name__ for f in E2E])
def test_sync_suite(case: Callable[..., None], on_postgres: str, tmp_path: Path, braze: SandboxServer,
                    monkeypatch: pytest.MonkeyPatch) -> None:
    params = inspect.signature(case).parameters
    case(*[{"tmp_path": tmp_path, "braze": braze, "monkeypatch": monkeypatch}[p] for p in params])


def test_crash_resume(on_postgres: str, tmp_path: Path) -> None:
    test_crash.test_sigkill_between_batches_then_rerun_sends_exactly_the_rest(tmp_path)


# --- what only the warehouse state shows ---------------------------------------------------
def _project(tmp_path: Path, pg: PgServer, db: str, braze: SandboxServer, rows: list[tuple[Any, ...]]) -> None:
    write_project(tmp_path, models={"traits": values_sql(["user_id", "plan", "ltv", "country"], rows)},
                  syncs={"traits": [records_sync(mode="mirror", fields={"plan": "plan", "ltv": "ltv"})]},
                  destinations=braze_destination(braze), target_extra={"warehouse": pg.warehouse(db)})


def test_snapshot_advances_in_place_not_rewritten(tmp_path: Path, pg: PgServer, pg_db: str, braze: SandboxServer) -> None:
    rows = [(f"u{i:03d}", "free", float(i), "US") for i in range(200)]
    _project(tmp_path, pg, pg_db, braze, rows)
    assert reverse_etl.sync(tmp_path).runs[0].sent == 200
    with pg.connect(pg_db) as conn:
        (table,) = conn.execute('SELECT snapshot_table FROM "_retl"."_retl_syncs"').fetchone()  # type: ignore[misc]
        before = dict(conn.execute(f'SELECT user_id, ctid::text FROM "_retl"."{table}"').fetchall())
    rows[5] = ("u005", "pro", 5.0, "US")
    _project(tmp_path, pg, pg_db, braze, rows[:-1])  # one changed, one removed
    run = reverse_etl.sync(tmp_path).runs[0]
    assert (run.changed, run.removed, run.sent) == (1, 1, 2)
    with pg.connect(pg_db) as conn:
        after = dict(conn.execute(f'SELECT user_id, ctid::text FROM "_retl"."{table}"').fetchall())
    # Untouched rows keep their physical place: only the acknowledged delta was written.
    untouched = set(before) - {"u005", "u199"}
    assert {k: after[k] for k in untouched} == {k: before[k] for k in untouched}
    assert "u199" not in after and after["u005"] != before["u005"]


def test_state_lives_in_the_retl_schema_and_history_reads_it(tmp_path: Path, pg: PgServer, pg_db: str, braze: SandboxServer) -> None:
    _project(tmp_path, pg, pg_db, braze, [("u1", "pro", 1.0, "US")])
    run = reverse_etl.sync(tmp_path).runs[0]
    assert not (tmp_path / ".retl" / "state.duckdb").exists()  # nothing kept locally
    with pg.connect(pg_db) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = '_retl'").fetchall()}
        algorithm = conn.execute('SELECT hash_algorithm FROM "_retl"."_retl_syncs"').fetchone()
    assert {"_retl_syncs", "_retl_runs", "_retl_row_errors", "_retl_meta", "_retl_migrations"} <= tables
    assert algorithm == ("md5-text/postgres/1",)
    assert [r.run_id for r in reverse_etl.history(tmp_path)] == [run.run_id]


def test_second_process_is_refused_while_a_run_holds_the_state(tmp_path: Path, pg: PgServer, pg_db: str, braze: SandboxServer) -> None:
    from reverse_etl.config.profiles import StateConfig
    from reverse_etl.config.warehouses import PostgresWarehouseConfig
    from reverse_etl.errors import StateBusyError
    from reverse_etl.warehouse.postgres import PostgresWarehouse

    config = PostgresWarehouseConfig.model_validate(pg.warehouse(pg_db))
    state = StateConfig()
    with PostgresWarehouse(config, tmp_path).session() as first:
        first.open_state(state, tmp_path)
        with PostgresWarehouse(config, tmp_path).session() as second, pytest.raises(StateBusyError):
            second.open_state(state, tmp_path)


def test_null_and_empty_string_hash_differently(tmp_path: Path, pg: PgServer, pg_db: str, braze: SandboxServer) -> None:
    _project(tmp_path, pg, pg_db, braze, [("u1", None, 1.0, "US"), ("u2", "", 1.0, "US")])
    assert reverse_etl.sync(tmp_path).runs[0].sent == 2
    _project(tmp_path, pg, pg_db, braze, [("u1", "", 1.0, "US"), ("u2", None, 1.0, "US")])
    plan = reverse_etl.diff(tmp_path).plans[0]
    assert plan.changed == 2


def test_model_in_warehouse_tables_and_a_dialect(tmp_path: Path, pg: PgServer, pg_db: str, braze: SandboxServer) -> None:
    with pg.connect(pg_db) as conn:
        conn.execute("CREATE TABLE users (id text PRIMARY KEY, ltv numeric(12,2), signed_up timestamptz)")
        conn.execute("INSERT INTO users SELECT 'u' || g, g * 10.5, now() FROM generate_series(1, 50) AS g")
    write_project(
        tmp_path,
        models={"vip": "-- dialect: snowflake\nSELECT id AS user_id, ltv, IFF(ltv > 100, 'gold', 'std') AS plan FROM users"},
        syncs={"traits": [records_sync(model="vip")]},
        destinations=braze_destination(braze), target_extra={"warehouse": pg.warehouse(pg_db)},
    )
    run = reverse_etl.sync(tmp_path).runs[0]
    assert (run.status, run.sent) == ("success", 50)
    assert braze.emulator.user("u20")["plan"] == "gold"  # type: ignore[attr-defined]
    assert reverse_etl.sync(tmp_path).runs[0].sent == 0


def test_local_state_pulls_only_the_mapped_columns(tmp_path: Path, pg: PgServer, pg_db: str, braze: SandboxServer) -> None:
    write_project(tmp_path, models={"members": values_sql(["user_id", "junk"], [("u1", "x"), ("u2", "y")])},
                  syncs={"audiences": [audience_sync()]}, destinations=braze_destination(braze),
                  target_extra={"warehouse": pg.warehouse(pg_db), "state": "local"})
    assert reverse_etl.sync(tmp_path).runs[0].sent == 2
    state = duckdb.connect(str(tmp_path / ".retl" / "state.duckdb"), read_only=True)
    try:
        assert state.execute("SELECT hash_algorithm FROM _retl_syncs").fetchone()[0].startswith("duckdb-hash")  # type: ignore[index]
    finally:
        state.close()
    with pg.connect(pg_db) as conn:
        assert conn.execute("SELECT to_regnamespace('_retl')").fetchone() == (None,)  # nothing written to the warehouse
    set_model(tmp_path, "members", values_sql(["user_id", "junk"], [("u1", "x")]))
    assert reverse_etl.sync(tmp_path).runs[0].removed == 1


def test_profile_shorthand_and_bad_state_for_duckdb(tmp_path: Path) -> None:
    from reverse_etl.config.profiles import load_target
    from reverse_etl.errors import ConfigError

    path = tmp_path / "profiles.yml"
    path.write_text(yaml.safe_dump({"targets": {"dev": {"warehouse": {"type": "duckdb"}, "state": "warehouse"}}}))
    with pytest.raises(ConfigError, match="read-only"):
        load_target(path)


def test_a_run_whose_state_lock_is_lost_stops_before_its_next_chunk(
    tmp_path: Path, pg: PgServer, pg_db: str, braze: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lease taken over while this process stalled (Snowflake, BigQuery, Databricks): the run
    stops before sending another chunk, so two processes never send the same rows. Driven here
    with PostgreSQL's own lock object marked lost after the first chunk."""
    from reverse_etl.results import NullReporter
    from reverse_etl.warehouse.postgres import PostgresWarehouse

    taken: list[Any] = []
    state_lock = PostgresWarehouse.state_lock

    def keep(self: PostgresWarehouse, session: Any, schema: str) -> Any:
        taken.append(state_lock(self, session, schema))
        return taken[-1]

    class LoseTheLockAfterTheFirstChunk(NullReporter):
        def progress(self, sync: str, done: int, total: int) -> None:
            taken[-1].lost = True

    monkeypatch.setattr(PostgresWarehouse, "state_lock", keep)
    rows = [(f"u{i:02d}", "free", float(i), "US") for i in range(12)]
    write_project(tmp_path, models={"traits": values_sql(["user_id", "plan", "ltv", "country"], rows)},
                  syncs={"traits": [records_sync(mode="mirror", fields={"plan": "plan", "ltv": "ltv"})]},
                  destinations=braze_destination(braze, checkpoint_rows=4, batch_size=2),
                  target_extra={"warehouse": pg.warehouse(pg_db)})
    run = reverse_etl.sync(tmp_path, reporter=LoseTheLockAfterTheFirstChunk()).runs[0]
    assert run.status == "error" and "taken over" in (run.error or "")
    assert run.sent == 4  # the first chunk, acknowledged; nothing after
    assert len(braze.emulator.users()) == 4  # type: ignore[attr-defined]
