"""Unattended runs: schedules, change detection, per-sync locks, scheduler memory and alerts.

::

    triggers.py     when a sync is due: pure functions of schedule, memory and time (Clock seam)
    fingerprint.py  a cheap fingerprint of what a model reads (files, tables, freshness_sql)
    dbt.py          the newest dbt invocation in run_results.json (after_dbt)
    locks.py        per-sync lock files with a lease, heartbeat and stale-lock recovery
    state.py        the scheduler memory: a JSON file next to the state store, written atomically
    execute.py      one guarded run (locks, busy retries, memory, alerts): retl sync and the loop
    alerts.py       webhook / command alerts on failure, rejected rows and guard trips
    checks.py       validation of schedule: blocks (cron, tz, after)
    loop.py         the retl schedule loop, with clean shutdown on SIGINT/SIGTERM
    status.py       what runs now, readable while the state store is busy

See docs/scheduling.md for the user-facing picture.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reverse_etl.scheduler.execute import locked_sync
    from reverse_etl.scheduler.locks import LockHeld, SyncLock
    from reverse_etl.scheduler.loop import Scheduler
    from reverse_etl.scheduler.triggers import Clock, Decision, SyncMemory, SystemClock, evaluate

# Loaded on first use: ``retl sync`` needs only execute.py (and its locks), not the loop, the
# change detection or cron parsing, and a run should not wait for their imports.
_HOME = {
    "locked_sync": "execute", "LockHeld": "locks", "SyncLock": "locks", "Scheduler": "loop", "Clock": "triggers",
    "Decision": "triggers", "SyncMemory": "triggers", "SystemClock": "triggers", "evaluate": "triggers",
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)


__all__ = ["Clock", "Decision", "LockHeld", "Scheduler", "SyncLock", "SyncMemory", "SystemClock", "evaluate", "locked_sync"]
