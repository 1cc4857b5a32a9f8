"""The state store interface, and the records it keeps.

Two implementations: :class:`~reverse_etl.state.store.DuckDBStateStore`, a local DuckDB file
attached to the run's DuckDB engine, and :class:`~reverse_etl.state.warehouse.SqlStateStore`,
tables in a schema (``_retl``) of the user's warehouse, written through the warehouse adapter.
Both keep the same tables (``_retl_syncs``, ``_retl_runs``, ``_retl_row_errors``,
``_retl_meta``, one snapshot table per sync) and the same rule: a snapshot only advances by
applying the delta rows a destination acknowledged.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb

ENGINE_VERSION = "1"


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class SnapshotInfo:
    sync: str
    table: str  # fully qualified, quoted
    key_columns: list[str]
    value_columns: list[str]
    hash_columns: list[str]
    hash_algorithm: str
    destination_key: str | None = None
    reset: str | None = None  # why the snapshot was (or, in a preview, would be) started afresh


@dataclass
class RowError:
    row_key: str
    action: str
    kind: str  # rejected | failed
    reason: str


@dataclass
class RunRecord:
    run_id: str
    sync: str
    status: str
    started_at: datetime
    finished_at: datetime | None = None
    duration_s: float | None = None
    added: int = 0
    changed: int = 0
    removed: int = 0
    sent: int = 0
    failed: int = 0
    rejected: int = 0
    full_resync: bool = False
    trigger: str | None = None
    error: str | None = None
    errors: list[RowError] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "sync": self.sync,
            "status": self.status,
            "started_at": self.started_at.isoformat() + "Z",
            "finished_at": self.finished_at.isoformat() + "Z" if self.finished_at else None,
            "duration_s": self.duration_s,
            "added": self.added,
            "changed": self.changed,
            "removed": self.removed,
            "sent": self.sent,
            "failed": self.failed,
            "rejected": self.rejected,
            "full_resync": self.full_resync,
            "trigger": self.trigger,
            "error": self.error,
        }


RUN_COLUMNS = (
    "run_id", "sync", "status", "started_at", "finished_at", "duration_s", "added", "changed", "removed", "sent",
    "failed", "rejected", "full_resync", "trigger", "error",
)


def reset_reason(info: SnapshotInfo | None, key_columns: list[str], destination_key: str | None) -> str | None:
    """Why an existing snapshot no longer describes what this sync's destination holds, if it does not."""
    if info is None:
        return None
    if info.key_columns != key_columns:
        return f"the primary key changed from {info.key_columns} to {key_columns}"
    if info.destination_key and destination_key and info.destination_key != destination_key:
        return "the sync now points at another destination (or list, audience, object)"
    return None


class StateStore(ABC):
    """Snapshots, run history and row errors of one project target."""

    path: Path | str  # where it is, for messages: a file, or warehouse:schema

    @staticmethod
    def attach(conn: duckdb.DuckDBPyConnection, path: Path, *, read_only: bool = False) -> StateStore:
        """The local DuckDB state file attached to ``conn`` (see :class:`DuckDBStateStore`)."""
        from reverse_etl.state.store import DuckDBStateStore

        return DuckDBStateStore.attach(conn, path, read_only=read_only)

    @staticmethod
    def open(path: Path, *, read_only: bool = False) -> Any:
        """A standalone connection to a local state file (``retl runs``); a context manager."""
        from reverse_etl.state.store import DuckDBStateStore

        return DuckDBStateStore.open(path, read_only=read_only)

    # --- snapshots ---------------------------------------------------------------------
    @abstractmethod
    def snapshot(self, sync: str) -> SnapshotInfo | None:
        """The sync's snapshot, if it has one."""

    @abstractmethod
    def ensure_snapshot(
        self,
        sync: str,
        key_types: dict[str, str],
        value_types: dict[str, str],
        hash_columns: list[str],
        *,
        destination_key: str | None = None,
        preview: bool = False,
        model_table: str | None = None,
    ) -> SnapshotInfo:
        """The sync's snapshot table, created or evolved to hold these columns.

        ``model_table`` is the relation the diff reads the model from; a warehouse store
        creates the snapshot table in its shape.

        New mapped columns are added; if the hash algorithm changed, hashes are recomputed from
        the stored values so nothing looks changed. A snapshot of another destination or key is
        started afresh (every row is sent). A ``preview`` never drops anything: it diffs against
        an empty stand-in instead.
        """

    @abstractmethod
    def drop_snapshot(self, sync: str) -> None:
        """Forget what the sync's destination holds."""

    @abstractmethod
    def snapshot_count(self, info: SnapshotInfo) -> int:
        """Rows in the snapshot."""

    @abstractmethod
    def iter_snapshot(self, table: str, columns: Sequence[str]) -> Iterator[tuple[Any, ...]]:
        """Stream ``columns`` of a snapshot table (through its own cursor where the engine allows)."""

    # --- small values kept between runs ------------------------------------------------
    @abstractmethod
    def meta_get(self, key: str) -> str | None:
        """The value stored under ``key`` in ``_retl_meta``."""

    @abstractmethod
    def meta_put(self, key: str, value: str | None) -> None:
        """Store (or with None, forget) ``key``; committed at once."""

    # --- runs --------------------------------------------------------------------------
    @abstractmethod
    def start_run(self, sync: str, *, full_resync: bool = False, trigger: str | None = None) -> RunRecord:
        """Record a run as running."""

    @abstractmethod
    def finish_run(self, record: RunRecord, keep: int | None = None) -> None:
        """Record the outcome; keep the newest ``keep`` runs of the sync."""

    @abstractmethod
    def add_row_errors(self, record: RunRecord, errors: list[RowError]) -> None:
        """Rows the destination rejected or that could not be delivered in this run."""

    def checkpoint(self) -> None:  # noqa: B027 - a store without a write-ahead log of its own
        """Write what committed transactions left in the write-ahead log into the store itself."""

    @abstractmethod
    def runs(self, syncs: list[str] | None = None, limit: int = 50) -> list[RunRecord]:
        """Newest runs first."""

    @abstractmethod
    def run(self, run_id: str) -> RunRecord | None:
        """One run (by id or id prefix) with its row errors."""
