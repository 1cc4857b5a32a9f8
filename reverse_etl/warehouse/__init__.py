"""Warehouses: where models run. One adapter per engine, behaviour in class constants.

=============  ==============================  =====================================  ============
type           adapter                         driver (extra)                         tested live
=============  ==============================  =====================================  ============
duckdb         :class:`DuckDBWarehouse`        duckdb (core)                          yes
postgres       :class:`PostgresWarehouse`      psycopg 3 (``[postgres]``)              yes
spark          :class:`SparkWarehouse`         pyspark (``[spark]``)                  yes, local mode
databricks     :class:`DatabricksWarehouse`    databricks-sql-connector (``[spark]``) no: golden SQL
snowflake      :class:`SnowflakeWarehouse`     snowflake-connector-python             no: golden SQL
bigquery       :class:`BigQueryWarehouse`      google-cloud-bigquery                  no: golden SQL
=============  ==============================  =====================================  ============
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reverse_etl.warehouse.base import Warehouse, WarehouseSession
from reverse_etl.warehouse.duckdb import DuckDBWarehouse

__all__ = ["DuckDBWarehouse", "Warehouse", "WarehouseSession", "adapter_class", "open_warehouse"]


def adapter_class(type_name: str) -> type[Warehouse]:
    """The adapter for a warehouse ``type:``; drivers are imported only when a session opens."""
    if type_name == "duckdb":
        return DuckDBWarehouse
    if type_name == "postgres":
        from reverse_etl.warehouse.postgres import PostgresWarehouse

        return PostgresWarehouse
    if type_name == "snowflake":
        from reverse_etl.warehouse.snowflake import SnowflakeWarehouse

        return SnowflakeWarehouse
    if type_name == "bigquery":
        from reverse_etl.warehouse.bigquery import BigQueryWarehouse

        return BigQueryWarehouse
    if type_name in ("spark", "databricks"):
        from reverse_etl.warehouse import spark

        return spark.SparkWarehouse if type_name == "spark" else spark.DatabricksWarehouse
    raise ValueError(f"unsupported warehouse type {type_name!r}")


def open_warehouse(config: Any, root: object, state: Any = None) -> Warehouse:
    """The adapter for a target's warehouse ``config``.

    With the target's ``state`` config, a remote warehouse whose state is local (``state:
    local``) is wrapped so the diff runs in local DuckDB over the pulled model.
    """
    from reverse_etl.warehouse.sql import SqlWarehouse

    path = Path(str(root))
    adapter = adapter_class(config.type)(config, path)  # type: ignore[call-arg]
    if isinstance(adapter, SqlWarehouse) and state is not None and not state.in_warehouse(config):
        from reverse_etl.warehouse.local import PullWarehouse

        return PullWarehouse(adapter, path)
    return adapter
