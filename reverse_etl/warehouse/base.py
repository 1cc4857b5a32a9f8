"""The warehouse interface: open a session, build models in it, describe their columns."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import ClassVar

import duckdb

from reverse_etl.modeling import Model


class WarehouseSession(ABC):
    """One open connection for the length of a run. ``conn`` is the DuckDB engine that diffs."""

    conn: duckdb.DuckDBPyConnection

    @abstractmethod
    def build(self, models: list[Model]) -> None:
        """Define ``models`` (in dependency order) so later SQL can read them by name."""

    @abstractmethod
    def columns(self, model: str) -> dict[str, str]:
        """Column name -> SQL type of a built model."""

    @abstractmethod
    def relation(self, model: str, columns: list[str]) -> str:
        """A quoted relation the diff can read ``columns`` of ``model`` from."""


class Warehouse(ABC):
    DIALECT: ClassVar[str]

    @abstractmethod
    def session(self) -> AbstractContextManager[WarehouseSession]:
        """Open the warehouse for one run; closed (and its locks released) on exit."""

    def iter_tables(self) -> Iterator[str]:  # pragma: no cover - optional
        return iter(())
