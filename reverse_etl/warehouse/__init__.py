"""Warehouses: where models run. DuckDB first; each engine an adapter with class-constant behaviour."""

from __future__ import annotations

from reverse_etl.warehouse.base import Warehouse, WarehouseSession
from reverse_etl.warehouse.duckdb import DuckDBWarehouse

__all__ = ["DuckDBWarehouse", "Warehouse", "WarehouseSession", "open_warehouse"]


def open_warehouse(config: object, root: object) -> Warehouse:
    from pathlib import Path

    from reverse_etl.config.profiles import DuckDBWarehouseConfig

    if isinstance(config, DuckDBWarehouseConfig):
        return DuckDBWarehouse(config, Path(str(root)))
    raise ValueError(f"unsupported warehouse config {config!r}")
