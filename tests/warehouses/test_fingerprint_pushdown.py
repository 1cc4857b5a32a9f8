"""``when_changed`` on pushdown warehouses: the fingerprint is asked of the warehouse, in its dialect.

PostgreSQL and Spark run it live; Snowflake, BigQuery and Databricks are checked by the SQL they
would be sent (``golden/fingerprint.sql``) and by the fingerprinter's logic against a fake DB-API.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import sqlglot

from reverse_etl.errors import ConfigError
from reverse_etl.project import Project
from reverse_etl.scheduler.fingerprint import Fingerprinter, model_inputs, table_fingerprint_sql
from reverse_etl.warehouse import adapter_class
from reverse_etl.warehouse.sql import SqlSession, SqlWarehouse
from tests.helpers import records_sync, write_project
from tests.warehouses.fakedb import FakeConnection
from tests.warehouses.pg import PgServer
from tests.warehouses.test_adapters_golden import CONFIGS

GOLDEN = Path(__file__).parent / "golden" / "fingerprint.sql"
DESTINATIONS = {"braze": {"type": "braze", "base_url": "http://127.0.0.1:9", "api_key": "k"}}


def project(root: Path, warehouse: dict[str, Any], sql: str, **schedule: Any) -> Project:
    write_project(root, models={"people": sql},
                  syncs={"people": [records_sync(name="people", model="people", schedule={"when_changed": True, **schedule})]},
                  destinations=DESTINATIONS, target_extra={"warehouse": warehouse})
    return Project.load(root)


def digest(root: Path, cache: dict[str, Any] | None = None) -> str:
    loaded = Project.load(root)
    return Fingerprinter(loaded, cache).fingerprint(loaded.syncs["people"]).digest


# --- PostgreSQL, live -------------------------------------------------------------------------
@pytest.fixture
def pg_tables(pg: PgServer, pg_db: str) -> Any:
    with pg.connect(pg_db) as conn:
        conn.execute("CREATE TABLE customers (user_id text, plan text, ltv numeric(8, 2), seen timestamptz)")
        conn.execute("INSERT INTO customers VALUES ('u1', 'pro', 1.5, '2026-01-01 10:00+00'), ('u2', NULL, 0, NULL)")
        conn.execute("CREATE TABLE unrelated (x int)")
    return lambda sql: _run(pg, pg_db, sql)


def _run(pg: PgServer, dbname: str, sql: str) -> None:
    with pg.connect(dbname) as conn:
        conn.execute(sql)


@pytest.mark.postgres
def test_postgres_fingerprint_moves_with_the_tables_the_model_reads(tmp_path: Path, pg: PgServer, pg_db: str,
                                                                   pg_tables: Any) -> None:
    # Unquoted and mixed case, as users write it: PostgreSQL folds it to lower case, and so must we.
    loaded = project(tmp_path, pg.warehouse(pg_db), "SELECT user_id, plan, ltv FROM Public.Customers")
    fingerprinter = Fingerprinter(loaded)
    first = fingerprinter.fingerprint(loaded.syncs["people"])
    assert first.parts["tables"]["hashes"]["public.customers"].startswith("2:")  # read, not "unreadable"
    assert Fingerprinter(loaded).fingerprint(loaded.syncs["people"]).digest == first.digest  # nothing changed
    pg_tables("INSERT INTO unrelated VALUES (1)")
    assert digest(tmp_path) == first.digest  # a table the model does not read
    pg_tables("UPDATE customers SET ltv = 2.5 WHERE user_id = 'u1'")  # same count, new content
    second = digest(tmp_path)
    assert second != first.digest
    pg_tables("UPDATE customers SET ltv = 1.5 WHERE user_id = 'u1'")
    assert digest(tmp_path) == first.digest  # back to the same rows: the same fingerprint
    pg_tables("DELETE FROM customers WHERE user_id = 'u2'")
    assert digest(tmp_path) not in (first.digest, second)


@pytest.mark.postgres
def test_postgres_fingerprint_ignores_row_order(tmp_path: Path, pg: PgServer, pg_db: str, pg_tables: Any) -> None:
    project(tmp_path, pg.warehouse(pg_db), "SELECT user_id, plan, ltv FROM customers")
    first = digest(tmp_path)
    pg_tables("CREATE TABLE c2 AS SELECT * FROM customers ORDER BY user_id DESC; DROP TABLE customers; "
              "ALTER TABLE c2 RENAME TO customers")
    assert digest(tmp_path) == first


@pytest.mark.postgres
def test_postgres_freshness_sql_runs_in_the_warehouse_over_the_models(tmp_path: Path, pg: PgServer, pg_db: str,
                                                                      pg_tables: Any) -> None:
    project(tmp_path, pg.warehouse(pg_db), "SELECT user_id, plan, ltv FROM customers",
            freshness_sql="SELECT count(*), max(user_id) FROM people")
    first = digest(tmp_path)
    assert digest(tmp_path) == first
    pg_tables("UPDATE customers SET ltv = 9")  # invisible to this freshness query
    assert digest(tmp_path) == first
    pg_tables("INSERT INTO customers VALUES ('u3', 'free', 0, NULL)")
    assert digest(tmp_path) != first


@pytest.mark.postgres
def test_postgres_broken_freshness_sql_names_the_sync(tmp_path: Path, pg: PgServer, pg_db: str, pg_tables: Any) -> None:
    project(tmp_path, pg.warehouse(pg_db), "SELECT user_id, plan, ltv FROM customers", freshness_sql="SELECT nope FROM nowhere")
    with pytest.raises(ConfigError, match=r"'people': schedule\.freshness_sql failed: .*nowhere"):
        digest(tmp_path)


@pytest.mark.postgres
def test_postgres_missing_table_is_a_state_that_changes_when_it_appears(tmp_path: Path, pg: PgServer, pg_db: str,
                                                                        pg_tables: Any) -> None:
    project(tmp_path, pg.warehouse(pg_db), "SELECT user_id, plan, ltv FROM customers JOIN later USING (user_id)")
    first = digest(tmp_path)
    assert digest(tmp_path) == first
    pg_tables("CREATE TABLE later (user_id text)")
    assert digest(tmp_path) != first


# --- Spark, live ------------------------------------------------------------------------------
@pytest.mark.spark
def test_spark_fingerprint_moves_with_the_table(tmp_path: Path, spark: Any, spark_dir: Path) -> None:
    spark.sql("CREATE DATABASE IF NOT EXISTS retl_fp")
    spark.sql("DROP TABLE IF EXISTS retl_fp.customers")
    spark.sql("CREATE TABLE retl_fp.customers (user_id STRING, ltv DOUBLE) USING parquet")
    spark.sql("INSERT INTO retl_fp.customers VALUES ('u1', 1.0), ('u2', NULL)")
    warehouse = {"type": "spark", "schema": "retl_fp", "warehouse_dir": str(spark_dir / "warehouse")}
    project(tmp_path, warehouse, "SELECT user_id, ltv AS plan, ltv FROM customers")
    first = digest(tmp_path)
    assert digest(tmp_path) == first
    spark.sql("INSERT OVERWRITE TABLE retl_fp.customers VALUES ('u1', 2.0), ('u2', NULL)")
    assert digest(tmp_path) != first
    project(tmp_path, warehouse, "SELECT user_id, ltv AS plan, ltv FROM customers", freshness_sql="SELECT count(*) FROM people")
    counted = digest(tmp_path)
    spark.sql("INSERT INTO retl_fp.customers VALUES ('u3', 0.0)")
    assert digest(tmp_path) != counted


# --- the other dialects: golden SQL and the logic on a fake DB-API ------------------------------------
def fake_session(dialect: str, conn: FakeConnection, root: Path) -> SqlSession:
    warehouse = adapter_class(dialect)(CONFIGS[dialect], root)
    assert isinstance(warehouse, SqlWarehouse)
    return SqlSession(warehouse, conn)


def test_table_fingerprint_sql_matches_golden_file(tmp_path: Path) -> None:
    chunks = []
    for dialect in sorted(CONFIGS):
        session = fake_session(dialect, FakeConnection(), tmp_path)
        chunks.append(f"-- {dialect}\n{table_fingerprint_sql(session, ('Sales', 'Customers'))};\n")
    text = "\n".join(chunks)
    if os.environ.get("RETL_UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()


def test_every_fingerprint_statement_parses_in_its_dialect() -> None:
    for chunk in GOLDEN.read_text().split("\n\n"):
        dialect = chunk.splitlines()[0].removeprefix("-- ")
        statement = sqlglot.parse_one("\n".join(chunk.splitlines()[1:]), read="spark" if dialect == "databricks" else dialect)
        assert statement.find(sqlglot.exp.Count) is not None


def test_table_names_are_folded_the_way_each_engine_folds_them(tmp_path: Path) -> None:
    sql = 'SELECT * FROM Sales.Customers JOIN "Quoted"."Mixed" USING (id)'
    expected = {"snowflake": {("SALES", "CUSTOMERS"), ("Quoted", "Mixed")},
                "postgres": {("sales", "customers"), ("Quoted", "Mixed")}}
    for dialect, tables in expected.items():
        warehouse = {"snowflake": {"type": "snowflake", "account": "a", "user": "u", "database": "D"},
                     "postgres": {"type": "postgres"}}[dialect]
        loaded = project(tmp_path, warehouse, f"-- dialect: {dialect}\n{sql}")
        assert set(model_inputs(loaded, "people").tables) == tables


def snowflake_project(root: Path, monkeypatch: pytest.MonkeyPatch, conn: FakeConnection, **schedule: Any) -> Project:
    monkeypatch.setattr(adapter_class("snowflake"), "connect", lambda self: conn)
    return project(root, {"type": "snowflake", "account": "a", "user": "u", "database": "D"},
                   "SELECT user_id, plan, ltv FROM customers", **schedule)


def test_snowflake_fingerprint_asks_the_warehouse_every_poll(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = FakeConnection([(r"^select count\(\*\), cast\(coalesce\(sum\(hash\(\*\)\), 0\) as varchar\) from customers", [(2, "77")])])
    loaded = snowflake_project(tmp_path, monkeypatch, conn)
    fingerprinter = Fingerprinter(loaded)
    first = fingerprinter.fingerprint(loaded.syncs["people"])
    assert first.parts["tables"]["hashes"] == {"CUSTOMERS": "2:77"}
    assert conn.executed[-1] == 'SELECT COUNT(*), CAST(COALESCE(SUM(HASH(*)), 0) AS VARCHAR) FROM "CUSTOMERS" AS "__retl_t"'
    conn.rules = [(r"^select count\(\*\)", [(2, "78")])]  # same count, other content
    assert fingerprinter.fingerprint(loaded.syncs["people"]).digest != first.digest
    assert sum("COUNT(*)" in s for s in conn.executed) == 2  # no cached answer for a remote warehouse


def test_snowflake_freshness_sql_reads_the_models_views(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = FakeConnection([(r"^select max\(plan\) from people", [("pro",)])])
    loaded = snowflake_project(tmp_path, monkeypatch, conn, freshness_sql="SELECT max(plan) FROM people")
    first = Fingerprinter(loaded).fingerprint(loaded.syncs["people"]).digest
    assert conn.executed == ["CREATE OR REPLACE TEMPORARY VIEW \"PEOPLE\" AS SELECT user_id, plan, ltv FROM customers",
                             "SELECT max(plan) FROM people"]
    conn.rules = [(r"^select max\(plan\) from people", [("vip",)])]
    assert Fingerprinter(loaded).fingerprint(loaded.syncs["people"]).digest != first


def test_bigquery_freshness_sql_is_pointed_at_the_per_run_model_views(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = FakeConnection([(r"^select count\(\*\) from", [(3,)])])
    monkeypatch.setattr(adapter_class("bigquery"), "connect", lambda self: conn)
    write_project(tmp_path, models={"people": "SELECT user_id, plan, ltv FROM customers"},
                  syncs={"people": [records_sync(name="people", model="people",
                                                 schedule={"when_changed": True, "freshness_sql": "SELECT count(*) FROM people"})]},
                  destinations=DESTINATIONS,
                  target_extra={"warehouse": {"type": "bigquery", "project": "p", "dataset": "d"}, "state": {"schema": "retl_state"}})
    loaded = Project.load(tmp_path)
    Fingerprinter(loaded).fingerprint(loaded.syncs["people"])
    (query,) = [s for s in conn.executed if s.startswith("SELECT count(*)")]
    assert query.startswith("SELECT count(*) FROM `retl_state`.`__retl_") and query.endswith("_model_people`")
    assert conn.executed[-1].startswith("DROP VIEW IF EXISTS `retl_state`.`__retl_")  # dropped again at once
