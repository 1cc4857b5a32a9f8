"""Warehouse configs of a target: one pydantic model per engine, picked by ``type:``.

Keys follow dbt's profiles where dbt has them (``host``, ``port``, ``user``, ``dbname``,
``schema`` for PostgreSQL; ``account``, ``warehouse``, ``role`` for Snowflake; ``project``,
``dataset`` for BigQuery), so a dbt user can copy a target across.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

WAREHOUSE_TYPES = ("duckdb", "postgres", "snowflake", "bigquery", "spark", "databricks")


class _Config(BaseModel):
    # `schema` is the word users know (dbt's), but it shadows a BaseModel attribute: the field is
    # `schema_` with the alias `schema`.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    DIALECT: ClassVar[str]


class DuckDBWarehouseConfig(_Config):
    DIALECT: ClassVar[str] = "duckdb"
    type: Literal["duckdb"] = "duckdb"
    path: str = ".retl/warehouse.duckdb"
    memory_limit: str | None = None
    threads: int | None = Field(default=None, ge=1)


class PostgresWarehouseConfig(_Config):
    """psycopg 3. ``host`` may be a directory: a unix socket, as libpq reads it."""

    DIALECT: ClassVar[str] = "postgres"
    type: Literal["postgres"]
    host: str = "localhost"
    port: int = Field(default=5432, ge=1, le=65535)
    user: str | None = None
    password: SecretStr | None = None
    dbname: str = "postgres"
    schema_: str = Field(default="public", alias="schema")
    sslmode: str | None = None
    connect_timeout: int = Field(default=10, ge=1)
    fetch_rows: int = Field(default=50_000, ge=100, description="rows per round trip when pulling a model (state: local)")


class SnowflakeWarehouseConfig(_Config):
    """snowflake-connector-python (extra ``[snowflake]``)."""

    DIALECT: ClassVar[str] = "snowflake"
    type: Literal["snowflake"]
    account: str
    user: str
    password: SecretStr | None = None
    authenticator: str | None = None
    private_key_path: str | None = None
    role: str | None = None
    database: str
    warehouse: str | None = None
    schema_: str = Field(default="PUBLIC", alias="schema")


class BigQueryWarehouseConfig(_Config):
    """google-cloud-bigquery (extra ``[bigquery]``). ``keyfile`` for a service account, else ADC."""

    DIALECT: ClassVar[str] = "bigquery"
    type: Literal["bigquery"]
    project: str
    dataset: str
    location: str | None = None
    keyfile: str | None = None
    job_timeout_s: float = Field(default=300.0, gt=0)


class SparkWarehouseConfig(_Config):
    """A pyspark SparkSession (extra ``[spark]``): ``local[2]`` or a cluster master URL."""

    DIALECT: ClassVar[str] = "spark"
    type: Literal["spark"]
    master: str = "local[2]"
    schema_: str = Field(default="default", alias="schema")
    warehouse_dir: str | None = Field(default=None, description="spark.sql.warehouse.dir (relative: to the project)")
    conf: dict[str, str] = Field(default_factory=dict)


class DatabricksWarehouseConfig(_Config):
    """A Databricks SQL warehouse through databricks-sql-connector (extra ``[spark]``)."""

    DIALECT: ClassVar[str] = "databricks"
    type: Literal["databricks"]
    host: str
    http_path: str
    token: SecretStr
    catalog: str | None = None
    schema_: str = Field(default="default", alias="schema")


WarehouseConfig = Annotated[
    DuckDBWarehouseConfig
    | PostgresWarehouseConfig
    | SnowflakeWarehouseConfig
    | BigQueryWarehouseConfig
    | SparkWarehouseConfig
    | DatabricksWarehouseConfig,
    Field(discriminator="type"),
]


def dialect_of(config: Any) -> str:
    """The SQL dialect models are compiled to for this warehouse config."""
    return str(getattr(config, "DIALECT", "duckdb"))
