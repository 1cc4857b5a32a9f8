"""BigQuery through google-cloud-bigquery's DB-API (extra ``[bigquery]``). Not tested live here:
every statement is golden-tested and the adapter runs against a fake DB-API connection.

BigQuery has neither temporary views nor session-scoped tables outside scripts, so model views
and scratch tables go into the state dataset (``_retl``) under names unique to the run, and are
dropped at the end of the run (scratch tables also expire after a day, in case a run dies).
Multi-statement transactions exist only inside one script: a snapshot advance is sent as
``BEGIN TRANSACTION; ...; COMMIT TRANSACTION;`` in one query job. A run holds a lease on the
state: a row of ``_retl._retl_lock`` claimed by MERGE (BigQuery serializes concurrent DML on a
table and fails the loser of a conflict; see :mod:`reverse_etl.warehouse.locking`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from reverse_etl.config.warehouses import BigQueryWarehouseConfig
from reverse_etl.errors import WarehouseError
from reverse_etl.warehouse.sql import SqlSession, SqlWarehouse, clean_error, lit


class BigQueryWarehouse(SqlWarehouse):
    DIALECT: ClassVar[str] = "bigquery"
    SUPPORTS_TRANSACTIONS: ClassVar[bool] = True  # as scripts: see begin/commit
    SUPPORTS_MERGE: ClassVar[bool] = True
    SUPPORTS_TEMP_TABLES: ClassVar[bool] = False
    SUPPORTS_ARROW: ClassVar[bool] = True
    TESTED_LIVE: ClassVar[bool] = False
    TEMP_IN_STATE_SCHEMA: ClassVar[bool] = True
    MODELS_IN_STATE_SCHEMA: ClassVar[bool] = True
    HASH_ALGORITHM: ClassVar[str] = "md5-text/bigquery/1"
    ROW_HASH_SUM: ClassVar[str] = "SUM(CAST(FARM_FINGERPRINT(TO_JSON_STRING({row})) AS BIGNUMERIC))"
    MODEL_VIEW: ClassVar[str] = "CREATE OR REPLACE VIEW {name} AS {query}"
    TEMP_TABLE: ClassVar[str] = "CREATE TABLE {name} AS {query}"

    config: BigQueryWarehouseConfig
    _client: Any = None

    def connect(self) -> Any:
        try:
            from google.cloud import bigquery
            from google.cloud.bigquery import dbapi
        except ImportError:  # pragma: no cover - depends on the install
            raise WarehouseError("the bigquery warehouse needs google-cloud-bigquery",
                                 hint="pip install 'reverse_etl[bigquery]'") from None
        c = self.config
        # Models read tables of the configured dataset by their bare names.
        defaults = bigquery.QueryJobConfig(default_dataset=f"{c.project}.{c.dataset}")
        try:
            if c.keyfile:
                client = bigquery.Client.from_service_account_json(
                    str(self.root / c.keyfile), project=c.project, location=c.location, default_query_job_config=defaults
                )
            else:
                client = bigquery.Client(project=c.project, location=c.location, default_query_job_config=defaults)
        except Exception as exc:
            raise WarehouseError(f"cannot connect to BigQuery project {c.project!r}: {clean_error(exc)}",
                                 hint="check project, keyfile or application-default credentials") from None
        self._client = client
        return dbapi.connect(client)

    def describe(self, session: SqlSession, relation: str) -> dict[str, str]:
        table = session.native_name(relation).replace("`", "").split(".")
        dataset, name = (table[-2], table[-1]) if len(table) > 1 else (self.config.dataset, table[-1])
        rows = session.run_native(
            f"SELECT column_name, data_type FROM `{self.config.project}`.`{dataset}`.INFORMATION_SCHEMA.COLUMNS "
            f"WHERE table_name = {lit(name)} ORDER BY ordinal_position"
        )
        return {str(r[0]): str(r[1]) for r in rows}

    # Transactions are scripts: statements are held, then sent as one multi-statement query.
    def begin(self, session: SqlSession) -> None:
        session.buffer = []

    def commit(self, session: SqlSession) -> None:
        statements, session.buffer = session.buffer or [], None
        if statements:
            session.run_native("BEGIN TRANSACTION;\n" + ";\n".join(statements) + ";\nCOMMIT TRANSACTION;")

    def rollback(self, session: SqlSession) -> None:
        session.buffer = None  # nothing was sent

    def after_scratch(self, session: SqlSession, name: str, index: str | None) -> None:
        session.run_native(
            f"ALTER TABLE {session.native_name(name)} SET OPTIONS "
            "(expiration_timestamp = TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL 1 DAY))"
        )

    def fetch_arrow(self, session: SqlSession, sql: str) -> Iterator[Any]:
        if self._client is None:  # a DB-API connection handed in (tests): batches from rows
            yield from super().fetch_arrow(session, sql)
            return
        yield from self._client.query(sql).result().to_arrow_iterable()
