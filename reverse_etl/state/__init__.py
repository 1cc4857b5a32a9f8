"""The state store: per-sync snapshots of what each destination holds, run history, row errors."""

from __future__ import annotations

from reverse_etl.state.store import RowError, RunRecord, SnapshotInfo, StateStore

__all__ = ["RowError", "RunRecord", "SnapshotInfo", "StateStore"]
