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
