"""The state store: per-sync snapshots of what each destination holds, run history, row errors."""

from __future__ import annotations

from reverse_etl.state.base import RowError, RunRecord, SnapshotInfo, StateStore
from reverse_etl.state.store import DuckDBStateStore

__all__ = ["DuckDBStateStore", "RowError", "RunRecord", "SnapshotInfo", "StateStore"]
