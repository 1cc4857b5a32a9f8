"""The session interface the runner uses, the same on every engine: delta rows and Arrow, umask."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import reverse_etl
from reverse_etl.project import Project
from reverse_etl.runner import Runner
from reverse_etl.sandbox import SandboxServer
from tests.conftest import braze_destination
from tests.helpers import records_sync, values_sql, write_project
from tests.warehouses.pg import PgServer

ROWS = [(f"u{i}", "pro" if i % 2 else "free", float(i), "US") for i in range(25)]


def _delta_both_ways(root: Path) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    runner = Runner(Project.load(root))
    syncs = runner.project.select(None)
    with runner._session(syncs) as (session, state):
        item = runner._prepare(session, state, session.differ(), syncs[0], full_resync=False, limit=0, preview=True)
        rows = session.fetch_delta(item.delta, 3, 17)
        table = session.fetch_delta_arrow(item.delta, 3, 17)
    assert table.column_names == ["__retl_seq", "__retl_action", *item.columns.all]
    return rows, [tuple(r.values()) for r in table.to_pylist()]


def test_delta_as_rows_and_as_arrow_agree_on_duckdb(tmp_path: Path, braze: SandboxServer) -> None:
    write_project(tmp_path, models={"traits": values_sql(["user_id", "plan", "ltv", "country"], ROWS)},
                  syncs={"traits": [records_sync()]}, destinations=braze_destination(braze))
    rows, arrow = _delta_both_ways(tmp_path)
    assert len(rows) == 15 and rows == arrow


@pytest.mark.postgres
@pytest.mark.parametrize("state", ["warehouse", "local"])
def test_delta_as_rows_and_as_arrow_agree_on_postgres(state: str, tmp_path: Path, pg: PgServer, pg_db: str,
                                                      braze: SandboxServer) -> None:
    write_project(tmp_path, models={"traits": values_sql(["user_id", "plan", "ltv", "country"], ROWS)},
                  syncs={"traits": [records_sync()]}, destinations=braze_destination(braze),
                  target_extra={"warehouse": pg.warehouse(pg_db), "state": state})
    rows, arrow = _delta_both_ways(tmp_path)
    assert len(rows) == 15 and rows == arrow


def test_the_owner_only_umask_of_a_run_is_given_back(tmp_path: Path, braze: SandboxServer) -> None:
    # The DuckDB state is written under umask 077 (its write-ahead log holds customer ids); a
    # library caller's process must get its own umask back, after a run that failed too.
    before = os.umask(0o022)
    try:
        write_project(tmp_path, models={"traits": values_sql(["user_id", "plan", "ltv", "country"], ROWS)},
                      syncs={"traits": [records_sync()]}, destinations=braze_destination(braze))
        assert reverse_etl.sync(tmp_path).exit_code == 0
        assert os.umask(0o022) == 0o022
        write_project(tmp_path, models={"traits": "SELECT * FROM no_such_table"},
                      syncs={"traits": [records_sync()]}, destinations=braze_destination(braze))
        with pytest.raises(reverse_etl.errors.RetlError):
            reverse_etl.sync(tmp_path)
        assert os.umask(0o022) == 0o022
    finally:
        os.umask(before)
