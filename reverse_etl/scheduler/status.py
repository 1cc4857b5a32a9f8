"""What is running, and how syncs last ended, without opening the state store.

While a sync runs, its process holds the DuckDB state store exclusively, so ``retl runs`` cannot
read the run history. It can still say what runs (the live locks) and how each sync last ended
(the scheduler memory): :func:`history_while_busy` builds run records from those.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from reverse_etl.project import Project
from reverse_etl.scheduler.locks import held_locks
from reverse_etl.scheduler.state import SchedulerStore, locks_dir
from reverse_etl.state import RunRecord

log = logging.getLogger("reverse_etl.scheduler")


def _naive(value: datetime) -> datetime:
    """The state store's convention: naive UTC."""
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def history_while_busy(project: Project, syncs: list[str] | None, limit: int) -> list[RunRecord]:
    """Running syncs (from their locks) and each sync's last run (from the scheduler memory)."""
    state_path = project.path(project.target.config.state.path)
    records: list[RunRecord] = []
    for lock in held_locks(locks_dir(state_path)):
        if syncs is None or lock.sync in syncs:
            started = datetime.fromtimestamp(lock.started_at, UTC).replace(tzinfo=None)
            records.append(RunRecord(run_id="-", sync=lock.sync, status="running", started_at=started,
                                     trigger=f"pid {lock.pid} on {lock.host}"))
    for name, memory in SchedulerStore.for_state(state_path).load().items():
        if (syncs is not None and name not in syncs) or memory.last_started is None or memory.last_run_id is None:
            continue
        finished = _naive(memory.last_finished) if memory.last_finished else None
        started = _naive(memory.last_started)
        counts = memory.counts
        records.append(RunRecord(
            run_id=memory.last_run_id, sync=name, status=memory.last_status or "?", started_at=started,
            finished_at=finished, duration_s=round((finished - started).total_seconds(), 3) if finished else None,
            added=counts.get("added", 0), changed=counts.get("changed", 0), removed=counts.get("removed", 0),
            sent=counts.get("sent", 0), failed=counts.get("failed", 0), rejected=counts.get("rejected", 0),
            trigger=memory.last_trigger,
        ))
    log.warning(
        "the state store %s is in use by a running sync: showing what runs now and each sync's last run "
        "(from %s); the full history is back when the run ends", state_path, SchedulerStore.for_state(state_path).path,
    )
    records.sort(key=lambda r: r.started_at, reverse=True)
    return records[:limit]
