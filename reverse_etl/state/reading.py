"""Open a target's state to read run history, wherever it lives (local file or warehouse)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from reverse_etl.state.base import StateStore

if TYPE_CHECKING:
    from reverse_etl.project import Project


def state_in_warehouse(project: Project) -> bool:
    target = project.target.config
    return target.state.in_warehouse(target.warehouse)


@contextmanager
def read_warehouse_state(project: Project) -> Iterator[StateStore | None]:
    """The warehouse state of ``project`` for reading (no lock, nothing created); None if there is none yet."""
    from reverse_etl.state.warehouse import SqlStateStore
    from reverse_etl.warehouse import open_warehouse
    from reverse_etl.warehouse.sql import SqlSession

    target = project.target.config
    with open_warehouse(target.warehouse, project.root).session() as session:
        assert isinstance(session, SqlSession)
        store = SqlStateStore(session, target.state.schema_)
        yield store if store.exists() else None
