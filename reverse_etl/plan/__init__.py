"""Plans: frozen data saying what a sync would send, rendered by ``retl diff``."""

from __future__ import annotations

from reverse_etl.plan.plan import PlanFile, SyncPlan, sample_rows

__all__ = ["PlanFile", "SyncPlan", "sample_rows"]
