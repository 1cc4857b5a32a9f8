"""Spark SQL: pyspark for local and cluster Spark, databricks-sql-connector for Databricks SQL.

Both are append-only engines here (``APPEND_ONLY``): vanilla Spark tables (Parquet) have no
DELETE or UPDATE, and Databricks (Delta) has them but no multi-statement transactions. So each
snapshot and state table is a log of row versions read as the newest version per key, and an
acknowledgement is one INSERT, atomic on its own. The diff reads a log with a window over the
key; when a snapshot's log outgrows its live rows it is compacted into a new table, and run
history is pruned by rewriting it (see :class:`reverse_etl.state.warehouse.SqlStateStore`).

The state lock: local Spark takes an ``flock`` on a file in the warehouse directory (Parquet
tables offer no atomic conditional write); Databricks claims a lease row with MERGE (Delta).

pyspark has no DB-API: :class:`SparkConnection` gives the session the few DB-API calls it uses.
Local Spark keeps its catalog in an embedded Derby metastore beside ``warehouse_dir`` so the
``_retl`` schema outlives the process, as a warehouse's would.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from reverse_etl.config.warehouses import DatabricksWarehouseConfig, SparkWarehouseConfig
from reverse_etl.errors import WarehouseError
from reverse_etl.warehouse.locking import FileLock, StateLock
from reverse_etl.warehouse.sql import SqlSession, SqlWarehouse, clean_error, safe_name


def local_spark_session(master: str, warehouse_dir: Path, conf: dict[str, str]) -> Any:
    """A SparkSession (created once per process) with a persistent local catalog under ``warehouse_dir``."""
    from pyspark.sql import SparkSession

    warehouse_dir.mkdir(parents=True, exist_ok=True)
    builder = (
        SparkSession.builder.master(master).appName("reverse_etl")
        .config("spark.sql.warehouse.dir", str(warehouse_dir))
        .config("spark.sql.catalogImplementation", "hive")
        .config("spark.hadoop.javax.jdo.option.ConnectionURL",
                f"jdbc:derby:;databaseName={warehouse_dir / 'metastore_db'};create=true")
        .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={warehouse_dir}")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.session.timeZone", "UTC")
    )
    for key, value in conf.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


class SparkCursor:
    """The DB-API cursor calls :class:`SqlSession` makes, over ``spark.sql``."""

    def __init__(self, spark: Any) -> None:
        self.spark = spark
        self.description: list[tuple[str]] | None = None
        self._rows: list[tuple[Any, ...]] = []

    def execute(self, sql: str, params: Any = None) -> None:
        frame = self.spark.sql(sql)
        fields = frame.schema.fields
        self.description = [(f.name,) for f in fields] if fields else None
        self._rows = [tuple(r) for r in frame.collect()] if fields else []

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows, self._rows = self._rows, []
        return rows

    def fetchmany(self, size: int = 1) -> list[tuple[Any, ...]]:
        rows, self._rows = self._rows[:size], self._rows[size:]
        return rows

    def close(self) -> None:
        pass


class SparkConnection:
    def __init__(self, spark: Any) -> None:
        self.spark = spark

    def cursor(self) -> SparkCursor:
        return SparkCursor(self.spark)

    def rollback(self) -> None:
        pass

    def close(self) -> None:
        pass  # the SparkSession belongs to the process (getOrCreate); stopping it is the caller's call


class SparkWarehouse(SqlWarehouse):
    DIALECT: ClassVar[str] = "spark"
    SUPPORTS_TRANSACTIONS: ClassVar[bool] = False
    SUPPORTS_MERGE: ClassVar[bool] = False  # only for Delta/Iceberg tables
    SUPPORTS_TEMP_TABLES: ClassVar[bool] = False  # scratch results are cached temp views
    SUPPORTS_ARROW: ClassVar[bool] = True
    SUPPORTS_DROP_COLUMN: ClassVar[bool] = False
    APPEND_ONLY: ClassVar[bool] = True
    DEFER_SCRATCH_DROP: ClassVar[bool] = True
    TESTED_LIVE: ClassVar[bool] = True  # pyspark in local mode
    HASH_ALGORITHM: ClassVar[str] = "md5-text/spark/1"
    # xxhash64 over every column of the row; summed as a decimal (a bigint sum overflows under ANSI mode).
    ROW_HASH_SUM: ClassVar[str] = "SUM(CAST(XXHASH64(*) AS DECIMAL(38, 0)))"
    MODEL_VIEW: ClassVar[str] = "CREATE OR REPLACE TEMPORARY VIEW {name} AS {query}"

    config: SparkWarehouseConfig

    def warehouse_path(self) -> Path:
        """``spark.sql.warehouse.dir`` of a local session."""
        path = Path(self.config.warehouse_dir or ".retl/spark-warehouse")
        return path if path.is_absolute() else self.root / path

    def connect(self) -> Any:
        try:
            import pyspark  # noqa: F401
        except ImportError:  # pragma: no cover - depends on the install
            raise WarehouseError("the spark warehouse needs pyspark", hint="pip install 'reverse_etl[spark]'") from None
        try:
            spark = local_spark_session(self.config.master, self.warehouse_path(), self.config.conf)
        except Exception as exc:
            raise WarehouseError(f"cannot start Spark ({self.config.master}): {clean_error(exc)}",
                                 hint="pyspark needs Java 17 or 21 (JAVA_HOME)") from None
        return SparkConnection(spark)

    def on_connect(self, session: SqlSession) -> None:
        session.run_native("SET spark.sql.session.timeZone = UTC")
        session.run_native(f"CREATE DATABASE IF NOT EXISTS {session.ident(self.config.schema_)}")
        session.run_native(f"USE {session.ident(self.config.schema_)}")

    def describe(self, session: SqlSession, relation: str) -> dict[str, str]:
        out: dict[str, str] = {}
        for row in session.run_native(f"DESCRIBE {session.native_name(relation)}"):
            name = str(row[0] or "")
            if not name or name.startswith("#"):  # partition and detail sections follow a blank row
                break
            out[name] = str(row[1])
        return out

    def state_lock(self, session: SqlSession, schema: str) -> StateLock:
        # Parquet tables have no atomic conditional write to claim a row with. The file is on the
        # driver's host: it keeps apart processes there (local mode), not drivers on other hosts.
        return FileLock(self.warehouse_path() / f".retl-state-{safe_name(schema)}.lock", session.owner)

    def overwrite(self, session: SqlSession, table: str, source: str) -> None:
        # Not atomic on Parquet (files are deleted, then written): the caller keeps ``source`` until
        # this returned, so a run cut short can do it again.
        session.run_native(f"INSERT OVERWRITE TABLE {session.native_name(table)} SELECT * FROM {session.native_name(source)}")

    def create_scratch(self, session: SqlSession, name: str, query: str) -> None:
        # An eagerly cached temp view: computed once, read by the key check, counts and chunk fetches.
        session.run_native(f"CACHE TABLE {session.native_name(name)} AS {session.native(query)}")

    def drop_scratch(self, session: SqlSession, name: str) -> None:
        session.run_native(f"UNCACHE TABLE IF EXISTS {session.native_name(name)}")
        session.run_native(f"DROP VIEW IF EXISTS {session.native_name(name)}")

    def add_column(self, session: SqlSession, table: str, column: str, sql_type: str) -> None:
        session.run_native(f"ALTER TABLE {session.native_name(table)} ADD COLUMNS ({session.ident(column)} {sql_type})")

    def fetch_arrow(self, session: SqlSession, sql: str) -> Iterator[Any]:
        frame = session.dbapi.spark.sql(sql)
        table = frame.toArrow() if hasattr(frame, "toArrow") else frame._collect_as_arrow()
        yield from (table.to_batches() if hasattr(table, "to_batches") else table)


class DatabricksWarehouse(SparkWarehouse):
    """A Databricks SQL warehouse (Delta tables) through databricks-sql-connector. Not tested live here."""

    DIALECT: ClassVar[str] = "databricks"
    SUPPORTS_MERGE: ClassVar[bool] = True  # Delta
    TEMP_IN_STATE_SCHEMA: ClassVar[bool] = True  # SQL warehouses have no CACHE TABLE: Delta scratch tables
    DEFER_SCRATCH_DROP: ClassVar[bool] = False
    TESTED_LIVE: ClassVar[bool] = False
    HASH_ALGORITHM: ClassVar[str] = "md5-text/databricks/1"

    config: DatabricksWarehouseConfig  # type: ignore[assignment]

    def connect(self) -> Any:
        try:
            from databricks import sql as dbsql
        except ImportError:  # pragma: no cover - depends on the install
            raise WarehouseError("the databricks warehouse needs databricks-sql-connector",
                                 hint="pip install 'reverse_etl[spark]'") from None
        c = self.config
        try:
            return dbsql.connect(server_hostname=c.host, http_path=c.http_path, access_token=c.token.get_secret_value(),
                                 catalog=c.catalog, schema=c.schema_, user_agent_entry="reverse_etl")
        except Exception as exc:
            raise WarehouseError(f"cannot connect to Databricks at {c.host}: {clean_error(exc)}",
                                 hint="check host, http_path and token of the target's warehouse") from None

    def on_connect(self, session: SqlSession) -> None:
        session.run_native("SET TIME ZONE 'UTC'")

    def state_lock(self, session: SqlSession, schema: str) -> StateLock:
        # Delta has MERGE: a lease row, claimed with optimistic concurrency (the loser's commit fails).
        return SqlWarehouse.state_lock(self, session, schema)

    # Plain CREATE TABLE AS / DROP TABLE scratch tables (the session drops them at the end of the run).
    def create_scratch(self, session: SqlSession, name: str, query: str) -> None:
        SqlWarehouse.create_scratch(self, session, name, query)

    def drop_scratch(self, session: SqlSession, name: str) -> None:
        SqlWarehouse.drop_scratch(self, session, name)

    def fetch_arrow(self, session: SqlSession, sql: str) -> Iterator[Any]:
        cursor = session.dbapi.cursor()
        try:
            cursor.execute(sql)
            while True:
                table = cursor.fetchmany_arrow(self.FETCH_ROWS)
                if table.num_rows == 0:
                    break
                yield from table.to_batches()
        finally:
            cursor.close()
