"""Every statement a pushdown adapter issues, as golden SQL per dialect, and adapter logic on a fake DB-API.

Snowflake, BigQuery and Databricks are not reachable here, so their adapters are not tested
against a live engine; this file is what tests them. One scenario (open the state, build two
models, describe, create a snapshot, diff, sample, fetch the delta, hold its added rows, acknowledge a chunk with
rejected rows, record a run, its row errors, meta values, history) runs against a fake
connection, and the statements sent must equal ``golden/<dialect>.sql``. PostgreSQL and Spark
run it too: their statements are also run for real elsewhere.

Regenerate after a deliberate change: ``RETL_UPDATE_GOLDEN=1 pytest tests/warehouses/test_adapters_golden.py``
(and review the diff).
"""

from __future__ import annotations

import os
import sys
import types
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlglot

from reverse_etl.config.profiles import StateConfig
from reverse_etl.config.warehouses import (
    BigQueryWarehouseConfig,
    DatabricksWarehouseConfig,
    PostgresWarehouseConfig,
    SnowflakeWarehouseConfig,
    SparkWarehouseConfig,
)
from reverse_etl.diff.engine import SyncColumns
from reverse_etl.modeling.model import compile_model
from reverse_etl.state.base import RowError
from reverse_etl.warehouse import adapter_class
from reverse_etl.warehouse.sql import SqlSession, SqlWarehouse
from tests.warehouses.fakedb import FakeConnection, FakeError

GOLDEN = Path(__file__).parent / "golden"
CONFIGS: dict[str, Any] = {
    "postgres": PostgresWarehouseConfig(type="postgres", dbname="analytics"),
    "snowflake": SnowflakeWarehouseConfig(type="snowflake", account="acme-x1", user="retl", database="ANALYTICS"),
    "bigquery": BigQueryWarehouseConfig(type="bigquery", project="acme", dataset="marts"),
    "spark": SparkWarehouseConfig(type="spark"),
    "databricks": DatabricksWarehouseConfig(type="databricks", host="x.cloud.databricks.com", http_path="/sql/1", token="t"),
}
COLUMNS = SyncColumns(key=["user_id"], values=["email", "plan"], hashed=["email", "plan"], identity=["email"])
MODEL_TYPES = {"postgres": "text", "snowflake": "VARCHAR(16777216)", "bigquery": "STRING", "spark": "string", "databricks": "string"}

OWNER = "host:1:t0k3n"  # who holds the state lock, fixed for the golden file
LOCK_ROW = (OWNER, None, "2026-01-02 03:04:05+00", "2026-01-02 03:09:05+00")
RULES = [
    (r"pg_try_advisory_lock", [(True,)]),
    (r"^select owner, sync, cast\(acquired_at as", [LOCK_ROW]),
    (r"string_agg|listagg", [(60, 30, 10, 100, 0, 1, "9e107d9d372bb6826bd81d3542a419d6")]),  # delta counts + fingerprint
    (r"select distinct", [(60, 10, 0, 60, 150, 100)]),  # key check: added, removed, nulls, distinct, model, snapshot
    (r"^select count\(\*\) from", [(100,)]),
    (r"__retl_seq between 1 and 100 order by", [(1, "remove", "u9", "old@x.io", None), (2, "upsert", "u1", "a@x.io", "pro")]),
    (r"limit 5\) as d", [("upsert", "u1", "a@x.io", "pro", "a@x.io", "free")]),
]


def describe_rule(dialect: str) -> tuple[str, list[tuple[Any, ...]]]:
    t = MODEL_TYPES[dialect]
    pattern = {"postgres": "pg_attribute", "snowflake": "^describe table", "bigquery": "information_schema.columns",
               "spark": "^describe", "databricks": "^describe"}[dialect]
    rows: list[tuple[Any, ...]] = [("user_id", t), ("email", t), ("plan", t)]
    return pattern, rows


def open_session(dialect: str, conn: FakeConnection, tmp_path: Path) -> SqlSession:
    warehouse = adapter_class(dialect)(CONFIGS[dialect], tmp_path)
    assert isinstance(warehouse, SqlWarehouse)
    session = SqlSession(warehouse, conn)
    session.token = "t0k3n"  # names of per-run objects, fixed for the golden file
    session.owner = OWNER
    session.clock = lambda: 1_767_322_245_000_000_000  # versions of append-only rows, likewise
    session.statements = []
    warehouse.on_connect(session)
    return session


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    import reverse_etl.state.warehouse as store

    monkeypatch.setattr(store, "now", lambda: datetime(2026, 1, 2, 3, 4, 5))
    monkeypatch.setattr(store.uuid, "uuid4", lambda: types.SimpleNamespace(hex="0123456789abcdef"))


def scenario(dialect: str, tmp_path: Path) -> list[str]:
    conn = FakeConnection([describe_rule(dialect), *RULES])
    session = open_session(dialect, conn, tmp_path)
    state = session.open_state(StateConfig(), tmp_path)
    base = compile_model("users", tmp_path / "users.sql", "SELECT user_id, email, plan FROM raw_users",
                         variables={}, target_dialect=dialect)
    members = compile_model("members", tmp_path / "members.sql", "SELECT * FROM users AS u WHERE plan <> 'test'",
                            variables={}, target_dialect=dialect)
    session.build([base, members])
    types_ = session.columns("members")
    relation = session.relation("members", COLUMNS.all)
    snapshot = state.ensure_snapshot("braze traits", {"user_id": types_["user_id"]},
                                     {c: types_[c] for c in COLUMNS.values}, COLUMNS.hashed,
                                     destination_key="k1", model_table=relation)
    differ = session.differ()
    delta = differ.diff(model_table=relation, snapshot_table=snapshot.table, columns=COLUMNS,
                        sync_type="records", mode="mirror", model="members")
    assert (delta.added, delta.changed, delta.removed, delta.rows) == (60, 30, 10, 100)
    session.sample(delta, snapshot.table, 5)
    assert session.fetch_delta(delta, 1, 100)[1][1] == "upsert"
    differ.hold(delta, snapshot.table, 1, 100)  # added rows: maybe held while on the wire
    differ.ack(delta, snapshot.table, 1, 100, [3, 4, 5, 9], rejected=[3, 4])
    record = state.start_run("braze traits", trigger="cron")
    state.add_row_errors(record, [RowError("u3", "upsert", "rejected", "country 'ZZ' is not ISO 3166")])
    record.status, record.sent, record.rejected = "partial", 96, 1
    state.finish_run(record, keep=1000)
    state.meta_put("writer:list", "42")
    state.meta_get("writer:list")
    state.runs(["braze traits"], limit=20)
    session.cleanup()
    return [*(session.statements or []), *_buffered(conn, session)]


def _buffered(conn: FakeConnection, session: SqlSession) -> list[str]:
    # Statements sent outside session.statements (none expected): keeps the golden file honest.
    recorded = set(session.statements or [])
    return [f"-- not recorded by the session: {s}" for s in conn.executed if s not in recorded]


def render(statements: list[str]) -> str:
    return "".join(f"-- [{i}]\n{s.strip().rstrip(';')};\n\n" for i, s in enumerate(statements, 1))


@pytest.mark.parametrize("dialect", sorted(CONFIGS))
def test_statements_match_golden_file(dialect: str, tmp_path: Path, frozen: None) -> None:
    text = render(scenario(dialect, tmp_path))
    path = GOLDEN / f"{dialect}.sql"
    if os.environ.get("RETL_UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no golden file {path}: run with RETL_UPDATE_GOLDEN=1 and review it"
    assert text == path.read_text()


@pytest.mark.parametrize("dialect", sorted(CONFIGS))
def test_every_golden_statement_parses_in_its_dialect(dialect: str) -> None:
    read = "spark" if dialect == "databricks" else dialect
    for chunk in (GOLDEN / f"{dialect}.sql").read_text().split("\n\n"):
        body = "\n".join(line for line in chunk.splitlines() if not line.startswith("-- ["))
        if not body.strip() or body.startswith(("SET ", "BEGIN TRANSACTION", "ANALYZE", "ALTER TABLE", "CACHE ", "UNCACHE ")):
            continue  # session settings, scripts and engine commands sqlglot does not model
        for statement in sqlglot.parse(body, read=read):
            assert statement is not None


def test_identifiers_are_quoted_and_values_escaped(tmp_path: Path, frozen: None) -> None:
    conn = FakeConnection([describe_rule("snowflake"), *RULES])
    session = open_session("snowflake", conn, tmp_path)
    state = session.open_state(StateConfig(), tmp_path)
    state.meta_put("it's; DROP TABLE x; --", "v")
    sent = conn.executed[-2:]
    assert "'it''s; DROP TABLE x; --'" in sent[0] or "'it\\'s; DROP TABLE x; --'" in sent[0]
    assert '"_retl"."_retl_meta"' in sent[0]


# --- adapter logic ----------------------------------------------------------------------------
def test_snowflake_ack_rolls_back_when_a_statement_fails(tmp_path: Path, frozen: None) -> None:
    conn = FakeConnection([describe_rule("snowflake"), *RULES], fail_on=r"^insert into _retl\.snapshot__")
    session = open_session("snowflake", conn, tmp_path)
    state = session.open_state(StateConfig(), tmp_path)
    relation = session.relation("members", COLUMNS.all)
    snapshot = state.ensure_snapshot("s", {"user_id": "VARCHAR"}, {"email": "VARCHAR", "plan": "VARCHAR"}, COLUMNS.hashed,
                                     model_table=relation)
    differ = session.differ()
    delta = differ.diff(model_table=relation, snapshot_table=snapshot.table, columns=COLUMNS, sync_type="records", mode="upsert")
    conn.executed.clear()
    with pytest.raises(FakeError):
        differ.ack(delta, snapshot.table, 1, 100, [])
    verbs = [s.split()[0] for s in conn.executed]
    # removed rows, replaced rows, answered maybe-held rows, then the failing insert: all rolled back
    assert verbs == ["BEGIN", "DELETE", "DELETE", "DELETE", "INSERT", "ROLLBACK"]


def test_bigquery_ack_is_one_transaction_script(tmp_path: Path, frozen: None) -> None:
    conn = FakeConnection([describe_rule("bigquery"), *RULES])
    session = open_session("bigquery", conn, tmp_path)
    state = session.open_state(StateConfig(), tmp_path)
    relation = session.relation("members", COLUMNS.all)
    snapshot = state.ensure_snapshot("s", {"user_id": "STRING"}, {"email": "STRING", "plan": "STRING"}, COLUMNS.hashed,
                                     model_table=relation)
    differ = session.differ()
    delta = differ.diff(model_table=relation, snapshot_table=snapshot.table, columns=COLUMNS, sync_type="records", mode="upsert")
    conn.executed.clear()
    differ.ack(delta, snapshot.table, 1, 100, [7])
    assert len(conn.executed) == 1
    script = conn.executed[0]
    assert script.startswith("BEGIN TRANSACTION;") and script.endswith("COMMIT TRANSACTION;")
    assert script.count("DELETE FROM") == 3 and script.count("INSERT INTO") == 1  # + the answered maybe-held rows
    assert "NOT (d.`__retl_seq` BETWEEN 7 AND 7)" in script


def test_bigquery_models_read_each_other_through_per_run_views_dropped_at_the_end(tmp_path: Path) -> None:
    conn = FakeConnection([describe_rule("bigquery")])
    warehouse = adapter_class("bigquery")(CONFIGS["bigquery"], tmp_path)
    assert isinstance(warehouse, SqlWarehouse)
    session = SqlSession(warehouse, conn)
    session.token = "run1"
    session.build([
        compile_model("users", tmp_path / "u.sql", "SELECT 1 AS user_id", variables={}, target_dialect="bigquery"),
        compile_model("members", tmp_path / "m.sql", "SELECT u.user_id FROM users AS u", variables={}, target_dialect="bigquery"),
    ])
    assert conn.executed[1] == ("CREATE OR REPLACE VIEW `_retl`.`__retl_run1_model_members` AS "
                                "SELECT u.user_id FROM `_retl`.`__retl_run1_model_users` AS u")
    session.cleanup()
    assert conn.executed[-2:] == ["DROP VIEW IF EXISTS `_retl`.`__retl_run1_model_members`",
                                  "DROP VIEW IF EXISTS `_retl`.`__retl_run1_model_users`"]


def test_snowflake_connects_in_autocommit_utc_with_its_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    fake = types.ModuleType("snowflake.connector")
    fake.Error = RuntimeError  # type: ignore[attr-defined]
    fake.connect = lambda **kw: seen.update(kw) or FakeConnection()  # type: ignore[attr-defined]
    package = types.ModuleType("snowflake")
    package.connector = fake  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "snowflake", package)
    monkeypatch.setitem(sys.modules, "snowflake.connector", fake)
    config = SnowflakeWarehouseConfig(type="snowflake", account="acme-x1", user="retl", password="s3cret",  # type: ignore[arg-type]
                                      database="ANALYTICS", warehouse="XS", role="RETL", private_key_path="keys/rsa.p8")
    with adapter_class("snowflake")(config, tmp_path).session() as session:
        assert isinstance(session, SqlSession)
    assert seen["autocommit"] is True and seen["session_parameters"]["TIMEZONE"] == "UTC"
    assert (seen["account"], seen["warehouse"], seen["role"], seen["password"]) == ("acme-x1", "XS", "RETL", "s3cret")
    assert seen["private_key_file"] == str(tmp_path / "keys" / "rsa.p8")


def test_snowflake_snapshot_streams_as_arrow(tmp_path: Path) -> None:
    conn = FakeConnection([describe_rule("snowflake"), *RULES[:2], (r"^select user_id, email from", [("u1", "a"), ("u2", None)])])
    session = open_session("snowflake", conn, tmp_path)
    state = session.open_state(StateConfig(), tmp_path)
    assert list(state.iter_snapshot('"_retl"."snap"', ["user_id", "email"])) == [("u1", "a"), ("u2", None)]
