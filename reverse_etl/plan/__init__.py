"""Plans: frozen data saying what a sync would send, rendered by ``retl diff``."""

from __future__ import annotations

from reverse_etl.plan.plan import PlanFile, SyncPlan, sample_rows
from reverse_etl.plan.redact import redact_plan, redact_value

__all__ = ["PlanFile", "SyncPlan", "redact_plan", "redact_value", "sample_rows"]
