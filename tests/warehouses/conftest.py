"""Fixtures for warehouse tests: one real PostgreSQL server per test session, a database per test."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.warehouses.pg import PgServer, find_bindir, pg_server

_counter = itertools.count()


@pytest.fixture(scope="session")
def pg() -> Iterator[PgServer]:
    """A PostgreSQL server on 127.0.0.1 for the whole session (skipped, or in CI failed, without one)."""
    pytest.importorskip("psycopg")
    if find_bindir() is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL binaries are missing in CI: .ci/run should have installed the postgresql package")
        pytest.skip("PostgreSQL server binaries not installed (apt-get install postgresql)")
    with pg_server() as server:
        yield server


@pytest.fixture
def pg_db(pg: PgServer) -> str:
    """A fresh, empty database for one test."""
    return pg.create_database(f"retl_test_{os.getpid()}_{next(_counter)}")


@pytest.fixture(scope="session")
def spark_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("spark")


@pytest.fixture(scope="session")
def spark(spark_dir: Path) -> Iterator[Any]:
    """A local pyspark session (2 cores, small shuffles) shared by the session's Spark tests."""
    pytest.importorskip("pyspark")
    from reverse_etl.warehouse.spark import local_spark_session

    session = local_spark_session("local[2]", spark_dir / "warehouse", {})
    yield session
    session.stop()
