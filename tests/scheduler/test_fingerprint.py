"""Change detection: fingerprints move with what a model reads, and only with that."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import orjson
import pytest

from reverse_etl.errors import ConfigError
from reverse_etl.project import Project
from reverse_etl.scheduler.dbt import read_dbt_run
from reverse_etl.scheduler.fingerprint import Fingerprinter, model_inputs
from tests.helpers import records_sync, set_model, write_project
from tests.scheduler.conftest import people_project, write_people

WAREHOUSE_SQL = "SELECT user_id, plan, ltv FROM customers"


def warehouse_project(root: Path, **schedule: object) -> Path:
    conn = duckdb.connect(str(root / "wh.duckdb"))
    conn.execute("CREATE TABLE customers AS SELECT 'u1' AS user_id, 'pro' AS plan, 1.0 AS ltv")
    conn.execute("CREATE TABLE unrelated AS SELECT 1 AS x")
    conn.close()
    write_project(root, models={"people": WAREHOUSE_SQL},
                  syncs={"people": [records_sync(name="people", model="people", schedule={"when_changed": True, **schedule})]},
                  destinations={"braze": {"type": "braze", "base_url": "http://127.0.0.1:9", "api_key": "k"}},
                  target_extra={"warehouse": {"type": "duckdb", "path": "wh.duckdb"}})
    return root


def digest(root: Path, cache: dict[str, object] | None = None) -> str:
    project = Project.load(root)
    return Fingerprinter(project, cache).fingerprint(project.syncs["people"]).digest


def test_inputs_follow_models_upstream_to_files_tables_and_urls(tmp_path: Path) -> None:
    write_project(tmp_path, models={
        "stg": "SELECT * FROM read_csv('data/a.csv', header = true) UNION ALL SELECT * FROM 'data/b*.csv'",
        "mid": "WITH x AS (SELECT * FROM stg) SELECT x.* FROM x JOIN main.accounts USING (id)",
        "top": "SELECT * FROM mid, read_parquet(['s3://bucket/p.parquet', 'local.parquet'])",
    }, destinations={"braze": {"type": "braze", "base_url": "http://127.0.0.1:9", "api_key": "k"}})
    inputs = model_inputs(Project.load(tmp_path), "top")
    assert inputs.models == ("stg", "mid", "top")
    assert set(inputs.files) == {"data/a.csv", "data/b*.csv", "local.parquet"}
    assert inputs.remote == ("s3://bucket/p.parquet",)
    assert inputs.tables == (("main", "accounts"),)
    assert inputs.table_names == frozenset({"accounts"})


def test_file_fingerprint_moves_with_content_not_with_touch(tmp_path: Path) -> None:
    people_project(tmp_path, {"people": {"when_changed": True}})
    first = digest(tmp_path)
    assert digest(tmp_path) == first
    path = tmp_path / "data" / "people.csv"
    st = path.stat()
    path.write_bytes(path.read_bytes())  # rewritten, same bytes
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert digest(tmp_path) == first
    write_people(tmp_path, [("u1", "pro", 10.0), ("u2", "free", 0.5)])
    assert digest(tmp_path) != first


def test_unchanged_files_are_not_read_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    people_project(tmp_path, {"people": {"when_changed": True}})
    project = Project.load(tmp_path)
    fingerprinter = Fingerprinter(project)
    first = fingerprinter.fingerprint(project.syncs["people"]).digest
    import reverse_etl.scheduler.fingerprint as module

    def boom(*args: object) -> str:
        raise AssertionError("hashed an unchanged file")

    monkeypatch.setattr(module, "file_hash", boom)
    assert fingerprinter.fingerprint(project.syncs["people"]).digest == first


def test_model_sql_and_mapping_count_but_the_schedule_does_not(tmp_path: Path) -> None:
    people_project(tmp_path, {"people": {"when_changed": True}})
    first = digest(tmp_path)
    set_model(tmp_path, "people", "SELECT CAST(id AS VARCHAR) AS user_id, upper(plan) AS plan, 1.0 AS ltv "
                                  "FROM read_csv('data/people.csv', header = true, all_varchar = true)")
    second = digest(tmp_path)
    assert second != first
    people_yml = tmp_path / "syncs" / "people.yml"
    people_yml.write_text(people_yml.read_text().replace("when_changed: true", "when_changed: true\n    poll: 5m"))
    assert digest(tmp_path) == second


def test_warehouse_tables_hash_rows_and_ignore_other_tables(tmp_path: Path) -> None:
    warehouse_project(tmp_path)
    cache: dict[str, object] = {}
    first = digest(tmp_path, cache)
    conn = duckdb.connect(str(tmp_path / "wh.duckdb"))
    conn.execute("INSERT INTO unrelated VALUES (2)")
    conn.close()
    assert digest(tmp_path, cache) == first  # the file moved, but not a table the model reads
    conn = duckdb.connect(str(tmp_path / "wh.duckdb"))
    conn.execute("UPDATE customers SET ltv = 2.0")  # same row count, new content
    conn.close()
    assert digest(tmp_path, cache) != first


def test_a_locked_warehouse_is_reported_not_waited_for(tmp_path: Path) -> None:
    # WarehouseLockedError is what the loop treats as "look again at the next poll".
    warehouse_project(tmp_path)
    project = Project.load(tmp_path)
    holder = duckdb.connect(str(tmp_path / "wh.duckdb"))  # a writer such as dbt; DuckDB locks per process
    try:
        code = (
            "from reverse_etl.project import Project\n"
            "from reverse_etl.scheduler.fingerprint import Fingerprinter\n"
            "from reverse_etl.errors import WarehouseLockedError\n"
            f"p = Project.load({str(tmp_path)!r})\n"
            "try:\n    Fingerprinter(p).fingerprint(p.syncs['people'])\nexcept WarehouseLockedError:\n    print('locked')\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert out.stdout.strip() == "locked", out.stderr
    finally:
        holder.close()
    assert Fingerprinter(project).fingerprint(project.syncs["people"]).digest  # free again: fine


def test_freshness_sql_replaces_table_hashing(tmp_path: Path) -> None:
    warehouse_project(tmp_path, freshness_sql="SELECT count(*) FROM people")
    first = digest(tmp_path)
    conn = duckdb.connect(str(tmp_path / "wh.duckdb"))
    conn.execute("UPDATE customers SET ltv = 3.0")  # invisible to this freshness query
    conn.close()
    assert digest(tmp_path) == first
    conn = duckdb.connect(str(tmp_path / "wh.duckdb"))
    conn.execute("INSERT INTO customers VALUES ('u2', 'free', 0.0)")
    conn.close()
    assert digest(tmp_path) != first


def test_broken_freshness_sql_names_the_sync(tmp_path: Path) -> None:
    warehouse_project(tmp_path, freshness_sql="SELECT nope FROM nowhere")
    with pytest.raises(ConfigError, match=r"'people': schedule\.freshness_sql failed"):
        digest(tmp_path)


def write_run_results(path: Path, invocation: str, results: list[dict[str, object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps({
        "metadata": {"invocation_id": invocation, "generated_at": "2026-03-02T09:00:00Z", "dbt_version": "1.9.0"},
        "results": results, "elapsed_time": 1.0,
    }))


def test_dbt_run_results_are_read_and_matched_to_relations(tmp_path: Path) -> None:
    path = tmp_path / "target" / "run_results.json"
    assert read_dbt_run(path, frozenset({"customers"})) is None
    write_run_results(path, "inv-1", [
        {"unique_id": "model.shop.customers", "status": "success", "relation_name": '"wh"."main"."customers"'},
        {"unique_id": "model.shop.orders", "status": "error"},
        {"unique_id": "test.shop.not_null_x", "status": "pass"},
        {"unique_id": "seed.shop.countries", "status": "success"},
    ])
    run = read_dbt_run(path, frozenset({"customers"}))
    assert run is not None and run.invocation_id == "inv-1" and run.relevant
    assert run.built == frozenset({"customers", "countries"})
    orders_only = read_dbt_run(path, frozenset({"orders"}))
    assert orders_only is not None and not orders_only.relevant  # orders failed to build
    files_only = read_dbt_run(path, frozenset())
    assert files_only is not None and files_only.relevant  # no table to match: any build counts
    path.write_text('{"metadata": {"invocation_id": "half')  # dbt mid-write
    assert read_dbt_run(path, frozenset({"customers"})) is None
