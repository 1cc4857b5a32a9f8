"""A fake DB-API 2 connection: records every statement and answers from scripted rules.

For adapters whose engine is not reachable here (Snowflake, BigQuery, Databricks): the tests
check the SQL they send (golden files) and their logic (transactions, scripts, Arrow) against it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pyarrow as pa


class FakeError(Exception):
    pass


Rule = tuple[str, list[tuple[Any, ...]]]


class FakeCursor:
    def __init__(self, conn: FakeConnection) -> None:
        self.conn = conn
        self.description: list[tuple[Any, ...]] | None = None
        self._rows: list[tuple[Any, ...]] = []
        self.itersize = 0

    def execute(self, sql: str, params: Any = None) -> None:
        self.conn.executed.append(sql)
        flat = re.sub(r"[`\"]", "", " ".join(sql.split())).lower()
        if self.conn.fail_on and re.search(self.conn.fail_on, flat):
            raise FakeError(f"injected failure for: {sql[:80]}")
        for pattern, rows in self.conn.rules:
            if re.search(pattern, flat):
                width = len(rows[0]) if rows else 1
                self.description = [(f"c{i}",) for i in range(width)]
                self._rows = list(rows)
                return
        is_query = flat.startswith(("select", "with", "describe", "show"))
        self.description = [("c0",)] if is_query else None
        self._rows = []

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows, self._rows = self._rows, []
        return rows

    def fetchmany(self, size: int = 1) -> list[tuple[Any, ...]]:
        rows, self._rows = self._rows[:size], self._rows[size:]
        return rows

    def fetch_arrow_batches(self) -> Iterator[pa.Table]:  # snowflake-connector's Arrow API
        rows = self.fetchall()
        if rows:
            yield pa.table({f"c{i}": [r[i] for r in rows] for i in range(len(rows[0]))})

    def close(self) -> None:
        pass


class FakeConnection:
    def __init__(self, rules: list[Rule] | None = None, fail_on: str | None = None) -> None:
        self.rules = rules or []
        self.fail_on = fail_on
        self.executed: list[str] = []
        self.closed = False

    def cursor(self, *args: Any, **kwargs: Any) -> FakeCursor:
        return FakeCursor(self)

    def commit(self) -> None:
        pass

    def rollback(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True
