"""Versioned schema of the state store. Append a migration; never edit a released one."""

from __future__ import annotations

MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "initial schema",
        [
            """CREATE TABLE IF NOT EXISTS {c}._retl_meta (
                key VARCHAR PRIMARY KEY, value VARCHAR)""",
            """CREATE TABLE IF NOT EXISTS {c}._retl_syncs (
                sync VARCHAR PRIMARY KEY,
                snapshot_table VARCHAR NOT NULL,
                key_columns VARCHAR[] NOT NULL,
                value_columns VARCHAR[] NOT NULL,
                hash_columns VARCHAR[] NOT NULL,
                hash_algorithm VARCHAR NOT NULL,
                engine_version VARCHAR NOT NULL,
                created_at TIMESTAMP NOT NULL,
                updated_at TIMESTAMP NOT NULL)""",
            """CREATE TABLE IF NOT EXISTS {c}._retl_runs (
                run_id VARCHAR PRIMARY KEY,
                sync VARCHAR NOT NULL,
                status VARCHAR NOT NULL,
                started_at TIMESTAMP NOT NULL,
                finished_at TIMESTAMP,
                duration_s DOUBLE,
                added BIGINT DEFAULT 0, changed BIGINT DEFAULT 0, removed BIGINT DEFAULT 0,
                sent BIGINT DEFAULT 0, failed BIGINT DEFAULT 0, rejected BIGINT DEFAULT 0,
                full_resync BOOLEAN DEFAULT false,
                trigger VARCHAR,
                error VARCHAR)""",
            """CREATE TABLE IF NOT EXISTS {c}._retl_row_errors (
                run_id VARCHAR NOT NULL,
                sync VARCHAR NOT NULL,
                row_key VARCHAR NOT NULL,
                action VARCHAR NOT NULL,
                kind VARCHAR NOT NULL,
                reason VARCHAR NOT NULL,
                "at" TIMESTAMP NOT NULL)""",
        ],
    ),
]

MIGRATIONS.append(
    (
        2,
        "snapshots remember which destination they describe",
        ["ALTER TABLE {c}._retl_syncs ADD COLUMN destination_key VARCHAR"],
    )
)

LATEST = MIGRATIONS[-1][0]

# The same tables in a warehouse schema (state: warehouse), in canonical SQL (see
# reverse_etl.warehouse.sql) generated for each engine: plain types, column lists as JSON text,
# no defaults or enforced keys (not every engine has them). ``{v}`` adds the version columns of
# append-only engines (see reverse_etl.warehouse.sql.SqlWarehouse.APPEND_ONLY).
WAREHOUSE_MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "initial schema",
        [
            'CREATE TABLE IF NOT EXISTS {s}."_retl_meta" ("key" TEXT NOT NULL, "value" TEXT{v})',
            'CREATE TABLE IF NOT EXISTS {s}."_retl_syncs" ("sync" TEXT NOT NULL, "snapshot_table" TEXT NOT NULL, '
            '"key_columns" TEXT NOT NULL, "value_columns" TEXT NOT NULL, "hash_columns" TEXT NOT NULL, '
            '"hash_algorithm" TEXT NOT NULL, "engine_version" TEXT NOT NULL, "created_at" TIMESTAMP NOT NULL, '
            '"updated_at" TIMESTAMP NOT NULL, "destination_key" TEXT{v})',
            'CREATE TABLE IF NOT EXISTS {s}."_retl_runs" ("run_id" TEXT NOT NULL, "sync" TEXT NOT NULL, '
            '"status" TEXT NOT NULL, "started_at" TIMESTAMP NOT NULL, "finished_at" TIMESTAMP, "duration_s" DOUBLE PRECISION, '
            '"added" BIGINT, "changed" BIGINT, "removed" BIGINT, "sent" BIGINT, "failed" BIGINT, "rejected" BIGINT, '
            '"full_resync" BOOLEAN, "trigger" TEXT, "error" TEXT{v})',
            'CREATE TABLE IF NOT EXISTS {s}."_retl_row_errors" ("run_id" TEXT NOT NULL, "sync" TEXT NOT NULL, '
            '"row_key" TEXT NOT NULL, "action" TEXT NOT NULL, "kind" TEXT NOT NULL, "reason" TEXT NOT NULL, '
            '"at" TIMESTAMP NOT NULL)',
        ],
    ),
]
WAREHOUSE_LATEST = WAREHOUSE_MIGRATIONS[-1][0]
