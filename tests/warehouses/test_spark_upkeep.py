"""Append-only state on Spark: snapshot logs are compacted and run history pruned, crash-safely.

Run live on pyspark (local mode) at a tiny size. A "crash" is a statement that raises at a
chosen step; what must hold after it is that the snapshot reads exactly as before, and that the
next attempt tidies up what the cut-short one left.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reverse_etl.config.profiles import StateConfig
from reverse_etl.config.warehouses import SparkWarehouseConfig
from reverse_etl.modeling.model import compile_model
from reverse_etl.state.warehouse import SqlStateStore
from reverse_etl.warehouse.spark import SparkWarehouse
from reverse_etl.warehouse.sql import SqlSession

pytestmark = pytest.mark.spark
STATE = "retl_upkeep_state"


@pytest.fixture(scope="module")
def opened(spark: Any, spark_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SqlSession, SqlStateStore]]:
    root = tmp_path_factory.mktemp("upkeep")
    config = SparkWarehouseConfig(type="spark", schema="retl_upkeep", warehouse_dir=str(spark_dir / "warehouse"))
    with SparkWarehouse(config, root).session() as session:
        state = session.open_state(StateConfig(schema=STATE), root)  # type: ignore[call-arg]
        assert isinstance(state, SqlStateStore)
        state.compact_min_rows = 0
        model = compile_model("m", root / "m.sql", "SELECT 'u0' AS user_id, 'x' AS plan", variables={}, target_dialect="spark")
        session.build([model])
        state.ensure_snapshot("s", {"user_id": "string"}, {"plan": "string"}, ["plan"], model_table=session.relation("m", []))
        yield session, state


def table_of(state: SqlStateStore) -> str:
    info = state.snapshot("s")
    assert info is not None
    return info.table.split(".")[-1].strip('"')


def live_rows(state: SqlStateStore) -> set[tuple[Any, ...]]:
    info = state.snapshot("s")
    assert info is not None
    return set(state.iter_snapshot(info.table, ["user_id", "plan"]))


def append_versions(spark: Any, table: str, start: int) -> None:
    """Four versions of u0..u9 (u9 removed at the last), and a held row for u7: 41 rows, 9 live."""
    rows = [f"('u{k}', 'p{v}', 'h{v}', {start + v}, {'TRUE' if k == 9 and v == 3 else 'FALSE'})"
            for k in range(10) for v in range(4)]
    spark.sql(f"INSERT INTO `{STATE}`.`{table}` VALUES {', '.join(rows)}")
    spark.sql(f"INSERT INTO `{STATE}`.`{table}__held` VALUES ('u7', 'p3', 'maybe-held', {start + 9}, FALSE)")


def count(spark: Any, table: str) -> int:
    return int(spark.sql(f"SELECT count(*) FROM `{STATE}`.`{table}`").collect()[0][0])


def exists(spark: Any, table: str) -> bool:
    return bool(spark.catalog.tableExists(f"{STATE}.{table}"))


def test_compaction_keeps_the_live_rows_and_survives_a_crash_at_either_side_of_its_commit(
        opened: tuple[SqlSession, SqlStateStore], spark: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    state = opened[1]
    original = table_of(state)
    append_versions(spark, original, 10)
    expected = {(f"u{k}", "p3") for k in range(9)}
    assert live_rows(state) == expected

    # Cut short before the commit point: the sync still reads its old log, whole.
    def crash(*args: object) -> None:
        raise RuntimeError("killed")

    monkeypatch.setattr(state, "_repoint", crash)
    with pytest.raises(RuntimeError):
        state.compact("s")
    monkeypatch.undo()
    assert table_of(state) == original and live_rows(state) == expected
    orphans = [t.name for t in spark.catalog.listTables(STATE) if t.name.startswith(f"{original}__c")]
    assert len(orphans) == 2  # the copy and its held table, left by the crash

    # The next attempt drops them, compacts, and the sync reads the same rows from 9 + 1 rows.
    assert state.compact("s")
    compacted = table_of(state)
    assert compacted != original and not exists(spark, original) and not exists(spark, f"{original}__held")
    assert not any(exists(spark, t) for t in orphans if t not in (compacted, f"{compacted}__held"))
    assert live_rows(state) == expected
    assert (count(spark, compacted), count(spark, f"{compacted}__held")) == (9, 1)
    assert not state.compact("s")  # small enough now

    # Cut short after the commit point (the sync points at the copy; the old log is not yet dropped).
    append_versions(spark, compacted, 100)
    finish = state._finish_compaction
    calls: list[str] = []

    def stop_on_second(sync: str, current: str | None) -> None:
        calls.append(sync)
        if len(calls) == 2:
            raise RuntimeError("killed")
        finish(sync, current)

    monkeypatch.setattr(state, "_finish_compaction", stop_on_second)
    with pytest.raises(RuntimeError):
        state.compact("s")
    monkeypatch.undo()
    newest = table_of(state)
    assert newest != compacted and live_rows(state) == expected and exists(spark, compacted)
    assert not state.compact("s")  # nothing to compact, but the old log is dropped now
    assert not exists(spark, compacted) and state.meta_get("retl:compaction:s") is None
    assert state.meta_get("retl:prune") is None


def test_run_history_is_pruned_to_keep_per_sync_even_when_cut_short(opened: tuple[SqlSession, SqlStateStore],
                                                                    spark: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    session, state = opened
    runs = []
    for sync in ("a", "b"):
        for n in range(4):  # each run as two versions: started, then finished
            for v, status in ((0, "running"), (1, "success")):
                runs.append(f"('{sync}{n}', '{sync}', '{status}', TIMESTAMP '2026-01-0{n + 1} 00:00:00', NULL, NULL, "
                            f"0, 0, 0, 0, 0, 0, FALSE, NULL, NULL, {n * 10 + v}, FALSE)")
    spark.sql(f"INSERT INTO `{STATE}`.`_retl_runs` VALUES {', '.join(runs)}")
    errors = [f"('{r}', '{r[0]}', 'u1', 'upsert', 'rejected', 'bad', TIMESTAMP '2026-01-01 00:00:00')" for r in ("a0", "a3", "b3")]
    spark.sql(f"INSERT INTO `{STATE}`.`_retl_row_errors` VALUES {', '.join(errors)}")
    assert not state.prune_log("a", keep=3)  # 4 runs: within keep and its slack

    overwrite = session.warehouse.overwrite
    done: list[str] = []

    def crash_on_errors(s: SqlSession, table: str, source: str) -> None:
        if "row_errors" in table:
            raise RuntimeError("killed")
        overwrite(s, table, source)
        done.append(table)

    monkeypatch.setattr(session.warehouse, "overwrite", crash_on_errors)
    with pytest.raises(RuntimeError):
        state.prune_log("a", keep=1)
    monkeypatch.undo()
    assert done  # run history was rewritten, its row errors not yet
    state.prune_log("a", keep=1)  # finishes what was cut short (the copies were complete)
    assert [(r.run_id, r.status) for r in state.runs()] == [("a3", "success"), ("b3", "success")]
    assert count(spark, "_retl_runs") == 2  # one row per run kept: old versions are gone too
    assert {r[0] for r in spark.sql(f"SELECT run_id FROM `{STATE}`.`_retl_row_errors`").collect()} == {"a3", "b3"}
    assert not [t.name for t in spark.catalog.listTables(STATE) if "__keep" in t.name]
    assert state.meta_get("retl:prune") is None
