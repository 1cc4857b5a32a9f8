"""Rows on the wire are maybe held: a removal is still sent for a row whose delivery is uncertain.

Driven through the runner's session on every live engine: three added rows are held and sent;
the destination accepts u1, rejects u2 (it does not hold it) and never answers for u3 (it may).
Then u3 leaves the model: its removal must be sent. Had it stayed, it is sent again as added.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from reverse_etl.plan import SyncPlan
from reverse_etl.project import Project
from reverse_etl.runner import Runner
from tests.conftest import braze_destination
from tests.helpers import records_sync, set_model, values_sql, write_project
from tests.warehouses.pg import PgServer

COLS = ["user_id", "plan"]
_n = itertools.count()


def prepare(root: Path, *, send: tuple[list[int], list[int]] | None = None) -> SyncPlan:
    """Plan the sync; with ``send`` = (not_accepted, rejected), hold and acknowledge the whole delta."""
    runner = Runner(Project.load(root))
    syncs = runner.project.select(None)
    with runner._session(syncs) as (session, state):
        differ = session.differ()
        item = runner._prepare(session, state, differ, syncs[0], full_resync=False, limit=5, preview=send is None)
        if send is not None:
            differ.hold(item.delta, item.snapshot_table, 1, item.delta.rows)
            differ.ack(item.delta, item.snapshot_table, 1, item.delta.rows, send[0], rejected=send[1])
        return item.plan


def scenario(root: Path) -> None:
    first = prepare(root, send=([2, 3], [2]))  # seqs follow the key: u1 accepted, u2 rejected, u3 no answer
    assert (first.added, first.removed) == (3, 0)

    again = prepare(root)
    assert (again.added, again.changed, again.removed) == (2, 0, 0)  # u2 (refused) and u3 (maybe) again
    assert {r["key"]["user_id"] for r in again.sample["added"]} == {"u2", "u3"}

    set_model(root, "traits", values_sql(COLS, [("u1", "pro"), ("u2", "team")]))
    gone = prepare(root)
    assert (gone.added, gone.removed) == (1, 1)
    assert [r["key"]["user_id"] for r in gone.sample["removed"]] == ["u3"]  # its removal is sent

    prepare(root, send=([], []))
    assert prepare(root).total == 0


@pytest.fixture
def project(tmp_path: Path, braze: Any) -> Any:
    def write(**target: Any) -> Path:
        write_project(tmp_path, models={"traits": values_sql(COLS, [("u1", "pro"), ("u2", "team"), ("u3", "free")])},
                      syncs={"traits": [records_sync(mode="mirror", fields={"plan": "plan"})]},
                      destinations=braze_destination(braze), target_extra=target)
        return tmp_path

    return write


def test_on_duckdb(project: Any) -> None:
    scenario(project())


@pytest.mark.postgres
@pytest.mark.parametrize("state", ["warehouse", "local"])
def test_on_postgres(project: Any, state: str, pg: PgServer, pg_db: str) -> None:
    scenario(project(warehouse=pg.warehouse(pg_db), state=state))


@pytest.mark.spark
def test_on_spark(project: Any, spark: Any) -> None:
    n = next(_n)
    scenario(project(warehouse={"type": "spark", "schema": f"held_t{n}"}, state={"schema": f"held_state_t{n}"}))


def test_modes_without_removals_hold_nothing(tmp_path: Path, braze: Any) -> None:
    write_project(tmp_path, models={"traits": values_sql(COLS, [("u1", "pro")])},
                  syncs={"traits": [records_sync(mode="upsert", fields={"plan": "plan"})]},
                  destinations=braze_destination(braze))
    prepare(tmp_path, send=([1], []))
    assert prepare(tmp_path).added == 1  # not in the snapshot: plainly added again
