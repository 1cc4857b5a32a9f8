"""Snowflake through snowflake-connector-python (extra ``[snowflake]``). Not tested live here:
every statement is golden-tested per dialect and the adapter runs against a fake DB-API
connection (tests/warehouses/test_adapters_golden.py).

Models are temporary views of the session; join and delta are temporary tables; the delta is
fetched as Arrow batches (``fetch_arrow_batches``). The session runs in UTC so the row hash of a
timestamp does not depend on the account's time zone. Snowflake has no advisory locks: a run
holds a lease on the state (a row of ``_retl._retl_lock`` claimed by MERGE, which Snowflake runs
under a table lock; see :mod:`reverse_etl.warehouse.locking`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from reverse_etl.config.warehouses import SnowflakeWarehouseConfig
from reverse_etl.errors import WarehouseError
from reverse_etl.warehouse.sql import SqlSession, SqlWarehouse, clean_error


class SnowflakeWarehouse(SqlWarehouse):
    DIALECT: ClassVar[str] = "snowflake"
    SUPPORTS_TRANSACTIONS: ClassVar[bool] = True
    SUPPORTS_MERGE: ClassVar[bool] = True
    SUPPORTS_TEMP_TABLES: ClassVar[bool] = True
    SUPPORTS_ARROW: ClassVar[bool] = True
    TESTED_LIVE: ClassVar[bool] = False
    HASH_ALGORITHM: ClassVar[str] = "md5-text/snowflake/1"
    ROW_HASH_SUM: ClassVar[str] = "SUM(HASH(*))"  # 64-bit per row; Snowflake sums in NUMBER(38)
    MODEL_VIEW: ClassVar[str] = "CREATE OR REPLACE TEMPORARY VIEW {name} AS {query}"

    config: SnowflakeWarehouseConfig

    def connect_params(self) -> dict[str, Any]:
        """The connector's keyword arguments (secrets included: never log this)."""
        c = self.config
        params: dict[str, Any] = {
            "account": c.account, "user": c.user, "database": c.database, "schema": c.schema_,
            "role": c.role, "warehouse": c.warehouse, "authenticator": c.authenticator,
            "autocommit": True, "application": "reverse_etl",
            "session_parameters": {"TIMEZONE": "UTC", "QUERY_TAG": "reverse_etl"},
        }
        if c.password is not None:
            params["password"] = c.password.get_secret_value()
        if c.private_key_path:
            key = Path(c.private_key_path)
            params["private_key_file"] = str(key if key.is_absolute() else self.root / key)
        return {k: v for k, v in params.items() if v is not None}

    def connect(self) -> Any:
        try:
            import snowflake.connector
        except ImportError:  # pragma: no cover - depends on the install
            raise WarehouseError("the snowflake warehouse needs snowflake-connector-python",
                                 hint="pip install 'reverse_etl[snowflake]'") from None
        try:
            return snowflake.connector.connect(**self.connect_params())
        except snowflake.connector.Error as exc:
            raise WarehouseError(f"cannot connect to Snowflake account {self.config.account!r}: {clean_error(exc)}",
                                 hint="check account, user, role and credentials of the target's warehouse") from None

    def describe(self, session: SqlSession, relation: str) -> dict[str, str]:
        # DESCRIBE TABLE answers for tables and views alike: name and type come first in each row.
        rows = session.run_native(f"DESCRIBE TABLE {session.native_name(relation)}")
        return {str(r[0]): str(r[1]) for r in rows}

    def fetch_arrow(self, session: SqlSession, sql: str) -> Iterator[Any]:
        cursor = session.dbapi.cursor()
        try:
            cursor.execute(sql)
            for table in cursor.fetch_arrow_batches():
                yield from table.to_batches()
        finally:
            cursor.close()
