"""A model written in one dialect runs on another engine (sqlglot transpile), per dialect pair.

Each source dialect has a model in its own idiom (Snowflake's IFF and ``::``, BigQuery's IF and
SAFE_DIVIDE, Spark's NVL ...) that computes the same rows. Compiled for a target engine that is
live here (DuckDB, PostgreSQL, Spark local), it is run and must give exactly those rows.
Snowflake and BigQuery are not reachable here: for them the compiled SQL must parse back in the
target dialect (a transpile test, not a run).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest
import sqlglot

from reverse_etl.modeling.model import compile_model
from tests.warehouses.pg import PgServer

SOURCES = {
    "duckdb": "SELECT id, CASE WHEN amount > 10 THEN 'big' ELSE 'small' END AS size, amount::DOUBLE / 4 AS quarter, "
              "upper(name) AS name, coalesce(note, 'none') AS note FROM src",
    "postgres": "SELECT id, CASE WHEN amount > 10 THEN 'big' ELSE 'small' END AS size, amount::double precision / 4 AS quarter, "
                "upper(name) AS name, coalesce(note, 'none') AS note FROM src",
    "snowflake": "SELECT id, IFF(amount > 10, 'big', 'small') AS size, amount::FLOAT / 4 AS quarter, "
                 "UPPER(name) AS name, NVL(note, 'none') AS note FROM src",
    "bigquery": "SELECT id, IF(amount > 10, 'big', 'small') AS size, SAFE_DIVIDE(CAST(amount AS FLOAT64), 4) AS quarter, "
                "UPPER(name) AS name, IFNULL(note, 'none') AS note FROM src",
    "spark": "SELECT id, IF(amount > 10, 'big', 'small') AS size, CAST(amount AS DOUBLE) / 4 AS quarter, "
             "UPPER(name) AS name, NVL(note, 'none') AS note FROM src",
    "databricks": "SELECT id, IFF(amount > 10, 'big', 'small') AS size, CAST(amount AS DOUBLE) / 4 AS quarter, "
                  "UPPER(name) AS name, COALESCE(note, 'none') AS note FROM src",
}
SRC_ROWS = [(1, 5, "ann", None), (2, 12, "bob", "vip"), (3, 40, "cy", "")]
EXPECTED = [(1, "small", 1.25, "ANN", "none"), (2, "big", 3.0, "BOB", "vip"), (3, "big", 10.0, "CY", "")]
LIVE = ["duckdb", "postgres", "spark"]
NOT_LIVE = ["snowflake", "bigquery", "databricks"]


def compiled(source: str, target: str, tmp_path: Path) -> str:
    text = f"-- dialect: {source}\n{SOURCES[source]}\n"
    model = compile_model("m", tmp_path / "m.sql", text, variables={}, target_dialect=target)
    assert model.dialect == source
    return model.sql


def normalized(rows: list[Any]) -> list[tuple[Any, ...]]:
    return sorted((int(r[0]), r[1], round(float(r[2]), 4), r[3], r[4]) for r in rows)


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_runs_on_duckdb(source: str, tmp_path: Path) -> None:
    conn = duckdb.connect()
    conn.execute("CREATE TABLE src (id INTEGER, amount INTEGER, name VARCHAR, note VARCHAR)")
    conn.executemany("INSERT INTO src VALUES (?, ?, ?, ?)", SRC_ROWS)
    assert normalized(conn.execute(compiled(source, "duckdb", tmp_path)).fetchall()) == EXPECTED


@pytest.mark.postgres
@pytest.mark.parametrize("source", sorted(SOURCES))
def test_runs_on_postgres(source: str, tmp_path: Path, pg: PgServer, pg_db: str) -> None:
    with pg.connect(pg_db) as conn:
        conn.execute("CREATE TABLE src (id integer, amount integer, name text, note text)")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO src VALUES (%s, %s, %s, %s)", SRC_ROWS)
        rows = conn.execute(compiled(source, "postgres", tmp_path)).fetchall()
    assert normalized(rows) == EXPECTED


@pytest.mark.spark
@pytest.mark.parametrize("source", sorted(SOURCES))
def test_runs_on_spark(source: str, tmp_path: Path, spark: Any) -> None:
    spark.createDataFrame(SRC_ROWS, "id INT, amount INT, name STRING, note STRING").createOrReplaceTempView("src")
    rows = [tuple(r) for r in spark.sql(compiled(source, "spark", tmp_path)).collect()]
    assert normalized(rows) == EXPECTED


@pytest.mark.parametrize("target", NOT_LIVE)
@pytest.mark.parametrize("source", sorted(SOURCES))
def test_transpiles_for_engines_not_reachable_here(source: str, target: str, tmp_path: Path) -> None:
    sql = compiled(source, target, tmp_path)
    tree = sqlglot.parse_one(sql, read=target)  # valid in the target dialect
    assert tree.find(sqlglot.exp.Table).name.lower() == "src"  # type: ignore[union-attr]
    assert [s.alias_or_name.lower() for s in tree.selects] == ["id", "size", "quarter", "name", "note"]  # type: ignore[attr-defined]
