"""The diff engine: added / changed / removed rows of a model against a sync's snapshot, in SQL."""

from __future__ import annotations

from reverse_etl.diff.engine import Delta, Differ, SyncColumns

__all__ = ["Delta", "Differ", "SyncColumns"]
