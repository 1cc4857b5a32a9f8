"""The sync suite on Spark (pyspark, local mode): models, diff pushdown and the append-only snapshot advance.

The end-to-end tests of ``tests/core`` run unchanged with their project pointed at a Spark
schema of their own; state lives in a Spark schema too. The crash test is not run here: local
Spark's embedded metastore admits one process at a time, and it is this test process.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import reverse_etl
from reverse_etl.sandbox import SandboxServer
from tests.conftest import braze_destination
from tests.core import test_sync_e2e
from tests.helpers import records_sync, values_sql, write_project

pytestmark = pytest.mark.spark

# At CI's small size (each Spark statement costs a job): the e2e cases that exercise what differs
# per engine - both sync types' diffs and acknowledgements (the append-only advance), events, a
# partial rejection retried, a snapshot reset with its preview stand-in, the pushdown key check.
# The rest (other modes, guards, faults) run on DuckDB and PostgreSQL.
SPARK_CASES = (
    "test_audience_mirror_join_leave_and_idempotent_rerun",
    "test_records_upsert_update_and_mirror_clear",
    "test_events_are_sent_once",
    "test_rejected_rows_are_recorded_and_retried_accepted_not_resent",
    "test_pointing_a_sync_at_another_destination_starts_its_snapshot_afresh",
    "test_duplicate_keys_stop_that_sync_and_send_nothing",
)
E2E = [getattr(test_sync_e2e, name) for name in SPARK_CASES]
_ids = itertools.count()


def spark_snapshot_keys(spark: Any, state_schema: str) -> Callable[[Path, str], set[str]]:
    def read(root: Path, sync: str) -> set[str]:
        if not spark.catalog.databaseExists(state_schema) or not spark.catalog.tableExists(f"{state_schema}._retl_syncs"):
            return set()
        rows = spark.sql(
            f"SELECT snapshot_table, __retl_gone FROM (SELECT *, row_number() OVER (PARTITION BY sync ORDER BY __retl_v DESC) "
            f"AS rn FROM `{state_schema}`.`_retl_syncs`) WHERE rn = 1 AND sync = '{sync}'"
        ).collect()
        if not rows or rows[0][1]:
            return set()
        current = spark.sql(
            f"SELECT user_id FROM (SELECT *, row_number() OVER (PARTITION BY user_id ORDER BY __retl_v DESC) AS rn "
            f"FROM `{state_schema}`.`{rows[0][0]}`) WHERE rn = 1 AND NOT __retl_gone"
        ).collect()
        return {r[0] for r in current}

    return read


@pytest.fixture
def on_spark(spark: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    n = next(_ids)
    target = {"warehouse": {"type": "spark", "schema": f"retl_t{n}"}, "state": {"schema": f"retl_state_t{n}"}}

    def write(root: Path, **kwargs: Any) -> Path:
        extra = {**(kwargs.pop("target_extra", None) or {}), **target}
        return write_project(root, target_extra=extra, **kwargs)

    monkeypatch.setattr(test_sync_e2e, "write_project", write)
    monkeypatch.setattr(test_sync_e2e, "snapshot_keys", spark_snapshot_keys(spark, f"retl_state_t{n}"))
    yield target


@pytest.mark.parametrize("case", E2E, ids=[f.__name__ for f in E2E])
def test_sync_suite(case: Callable[..., None], on_spark: dict[str, Any], tmp_path: Path, braze: SandboxServer) -> None:
    params = inspect.signature(case).parameters
    case(*[{"tmp_path": tmp_path, "braze": braze}[p] for p in params])


def test_snapshot_advance_only_appends_the_acknowledged_delta(on_spark: dict[str, Any], spark: Any, tmp_path: Path,
                                                              braze: SandboxServer) -> None:
    state = on_spark["state"]["schema"]
    rows = [(f"u{i:02d}", "free", float(i), "US") for i in range(40)]
    write_project(tmp_path, models={"traits": values_sql(["user_id", "plan", "ltv", "country"], rows)},
                  syncs={"traits": [records_sync(mode="mirror")]}, destinations=braze_destination(braze), target_extra=on_spark)
    assert reverse_etl.sync(tmp_path).runs[0].sent == 40
    (table,) = spark.sql(f"SELECT snapshot_table FROM `{state}`.`_retl_syncs`").collect()[0]
    assert spark.sql(f"SELECT count(*) FROM `{state}`.`{table}`").collect()[0][0] == 40
    rows[3] = ("u03", "pro", 3.0, "US")
    write_project(tmp_path, models={"traits": values_sql(["user_id", "plan", "ltv", "country"], rows[:-1])},
                  syncs={"traits": [records_sync(mode="mirror")]}, destinations=braze_destination(braze), target_extra=on_spark)
    run = reverse_etl.sync(tmp_path).runs[0]
    assert (run.changed, run.removed, run.sent) == (1, 1, 2)
    # Two rows appended (a new version of u03, a tombstone for u39); nothing rewritten.
    assert spark.sql(f"SELECT count(*) FROM `{state}`.`{table}`").collect()[0][0] == 42
    assert reverse_etl.sync(tmp_path).runs[0].sent == 0
    assert [r.status for r in reverse_etl.history(tmp_path)] == ["success", "success", "success"]
