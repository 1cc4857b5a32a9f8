"""The DuckDB state store's schema version: a new file is migrated, a newer one refused."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from reverse_etl.errors import StateError
from reverse_etl.state.migrations import LATEST
from reverse_etl.state.store import CATALOG, DuckDBStateStore


def test_a_new_state_file_is_migrated_to_the_latest_version(tmp_path: Path) -> None:
    with DuckDBStateStore.open(tmp_path / "state.duckdb") as store:
        assert store._version() == LATEST
    with DuckDBStateStore.open(tmp_path / "state.duckdb", read_only=True) as store:  # and opens again as is
        assert store._version() == LATEST


def test_a_state_file_from_a_newer_reverse_etl_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.duckdb"
    with DuckDBStateStore.open(path) as store:
        store.conn.execute(f"INSERT INTO {CATALOG}._retl_migrations VALUES ({LATEST + 1}, 'from the future', now())")
    for read_only in (False, True):
        with pytest.raises(StateError, match=f"schema version {LATEST + 1}, newer than"), \
                DuckDBStateStore.open(path, read_only=read_only):
            pass
    with duckdb.connect(str(path)) as conn:  # refused, not touched
        assert conn.execute("SELECT max(version) FROM _retl_migrations").fetchone() == (LATEST + 1,)
