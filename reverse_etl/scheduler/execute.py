"""One guarded run of some syncs: the path every ``retl sync`` and every scheduled run takes.

1. take each sync's lock (:mod:`.locks`); a sync whose lock is held is reported ``skipped``
   ("already running"), or waited for with ``wait``;
2. look at the inputs (fingerprint, newest dbt run) of event-triggered syncs, before running,
   so a change that lands during the run triggers the next one;
3. run them (:class:`~reverse_etl.runner.Runner`). DuckDB lets one process at a time open the
   state store, and the warehouse may be held by a writer such as dbt: with ``wait`` these
   "busy" errors are retried with backoff; the scheduler defers instead (``busy="skip"``);
4. remember the outcome in the scheduler memory (:mod:`.state`) and fire alerts (:mod:`.alerts`);
5. release the locks, whatever happened.

``stop`` (a shutdown request) and a lost lock both make the runner stop after its current chunk.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Literal, Protocol

from reverse_etl.errors import RetlError, StateBusyError, StateError, WarehouseLockedError
from reverse_etl.plan import PlanFile
from reverse_etl.project import Project, SyncDef
from reverse_etl.results import Reporter, SyncResult, SyncRun
from reverse_etl.scheduler.alerts import Alert, AlertSender, alerts_for_error, alerts_for_runs
from reverse_etl.scheduler.locks import DEFAULT_LEASE_S, LockHeld, SyncLock, held_locks
from reverse_etl.scheduler.state import SchedulerStore, locks_dir
from reverse_etl.scheduler.triggers import Clock, Observations, SyncMemory, SystemClock

log = logging.getLogger("reverse_etl.scheduler")


class SyncRunner(Protocol):
    def sync(
        self, selectors: list[str] | None = None, *, full_resync: bool = False, force: bool = False,
        plan_file: PlanFile | None = None, trigger: str | None = None,
    ) -> SyncResult: ...


RunnerFactory = Callable[[Project, "Reporter | None", Callable[[], bool]], SyncRunner]


def default_runner(project: Project, reporter: Reporter | None, should_stop: Callable[[], bool]) -> SyncRunner:
    from reverse_etl.runner import Runner

    return Runner(project, reporter, should_stop=should_stop)


def exact(name: str) -> str:
    """A selector matching only the sync ``name``. A bare name also selects a sync *file* of that
    name (``syncs/<name>.yml``), which would run syncs whose locks we do not hold."""
    return f"[{name[0]}]{name[1:]}"


def is_busy(exc: BaseException) -> bool:
    """A run that could not start because another process holds the state store or warehouse."""
    if isinstance(exc, WarehouseLockedError):
        return True
    return isinstance(exc, StateBusyError)


def state_path(project: Project) -> Path:
    return project.path(project.target.config.state.path)


def observe(project: Project, syncs: list[SyncDef], store: SchedulerStore) -> dict[str, Observations]:
    """Fingerprints / dbt runs of the event-triggered syncs among ``syncs`` (what is unavailable is left out)."""
    out: dict[str, Observations] = {}
    wanted = [s for s in syncs if s.config.schedule and (s.config.schedule.when_changed or s.config.schedule.after_dbt)]
    if not wanted:
        return out
    from reverse_etl.scheduler.dbt import read_dbt_run  # only event-triggered syncs need these
    from reverse_etl.scheduler.fingerprint import Fingerprinter

    fingerprints = Fingerprinter(project, store.cache())
    for sync in wanted:
        schedule = sync.config.schedule
        assert schedule is not None
        fingerprint = dbt = None
        try:
            if schedule.when_changed:
                fingerprint = fingerprints.fingerprint(sync).digest
            if schedule.after_dbt:
                dbt = read_dbt_run(project.path(schedule.after_dbt), fingerprints.inputs(sync).table_names)
        except Exception as exc:  # looking is best effort: it must never stop a sync from running
            log.log(logging.INFO if is_busy(exc) else logging.WARNING,
                    "sync %s: could not look at its inputs: %s", sync.name, str(exc).split("\n")[0])
        out[sync.name] = Observations(fingerprint, dbt)
    store.update(cache={name: fingerprints.cache[name] for name in out if name in fingerprints.cache})
    return out


def _busy_error(exc: RetlError, project: Project) -> RetlError:
    running = [i for i in held_locks(locks_dir(state_path(project))) if i.pid != os.getpid()]
    who = "; ".join(f"{i.sync} ({i.describe()})" for i in running) or "a sync"
    message = exc.message if isinstance(exc, StateError) else str(exc).split("\n")[0]
    return type(exc)(message, hint=f"another retl process is running {who}; pass --wait to wait for it")


def locked_sync(
    project: Project,
    selectors: list[str] | None = None,
    *,
    reporter: Reporter | None = None,
    full_resync: bool = False,
    force: bool = False,
    plan_file: PlanFile | None = None,
    trigger: str | None = None,
    wait: float = 0.0,
    stop: threading.Event | None = None,
    busy: Literal["raise", "skip"] = "raise",
    observed: Mapping[str, Observations] | None = None,
    still_due: Callable[[str, SyncMemory], bool] | None = None,
    runner_factory: RunnerFactory = default_runner,
    clock: Clock | None = None,
    lease_s: float = DEFAULT_LEASE_S,
) -> SyncResult:
    """Run the selected syncs under their locks; see the module docstring for the steps.

    ``wait``: seconds to wait for a held lock or a busy state store (``math.inf``: until free).
    ``still_due``: called once the locks are held, to drop syncs another process just ran.
    """
    clock = clock or SystemClock()
    if plan_file is not None:
        selectors = [p.sync for p in plan_file.plans]
    syncs = project.select(selectors)
    store = SchedulerStore.for_state(state_path(project))
    order = {s.name: i for i, s in enumerate(syncs)}
    skipped: list[SyncRun] = []
    locks: list[SyncLock] = []
    try:
        for sync in sorted(syncs, key=lambda s: s.name):  # one order everywhere: no deadlock between waiters
            lock = SyncLock(locks_dir(state_path(project)), sync.name, lease_s=lease_s)
            try:
                lock.acquire(wait=wait, stop=stop)
            except LockHeld as exc:
                skipped.append(SyncRun(sync=sync.name, status="skipped", error=exc.message))
                continue
            locks.append(lock)
        if still_due is not None:
            memory = store.load()
            for lock in list(locks):
                if not still_due(lock.sync, memory.get(lock.sync) or SyncMemory()):
                    lock.release()
                    locks.remove(lock)
        chosen = [s for s in syncs if any(lock.sync == s.name for lock in locks)]
        if not chosen:
            return SyncResult(sorted(skipped, key=lambda r: order[r.sync]))
        seen = dict(observed) if observed is not None else observe(project, chosen, store)
        runs = _run(project, chosen, locks, seen, store, reporter=reporter, full_resync=full_resync, force=force,
                    plan_file=plan_file, trigger=trigger, wait=wait, stop=stop, busy=busy,
                    runner_factory=runner_factory, clock=clock)
        return SyncResult(sorted(runs + skipped, key=lambda r: order[r.sync]))
    finally:
        for lock in locks:
            lock.release()


def _run(
    project: Project, chosen: list[SyncDef], locks: list[SyncLock], seen: Mapping[str, Observations],
    store: SchedulerStore, *, reporter: Reporter | None, full_resync: bool, force: bool, plan_file: PlanFile | None,
    trigger: str | None, wait: float, stop: threading.Event | None, busy: str, runner_factory: RunnerFactory, clock: Clock,
) -> list[SyncRun]:
    names = [s.name for s in chosen]
    if plan_file is not None:
        plan_file = PlanFile(plan_file.target, [p for p in plan_file.plans if p.sync in names])

    def should_stop() -> bool:
        return (stop is not None and stop.is_set()) or any(lock.lost.is_set() for lock in locks)

    deadline = time.monotonic() + wait
    delay = 0.5
    while True:
        started = clock.now()
        try:
            runner = runner_factory(project, reporter, should_stop)
            result = runner.sync([exact(n) for n in names], full_resync=full_resync, force=force,
                                 plan_file=plan_file, trigger=trigger)
            break
        except RetlError as exc:
            if is_busy(exc):
                remaining = deadline - time.monotonic()
                if remaining > 0 and not should_stop():
                    pause = min(delay, remaining)
                    log.info("%s; retrying in %.1fs", str(exc).split("\n")[0], pause)
                    if stop is not None:
                        stop.wait(pause)
                    else:
                        time.sleep(pause)
                    delay = min(delay * 2, 10.0)
                    continue
                if busy == "skip":
                    message = "deferred: " + str(exc).split("\n")[0]
                    return [SyncRun(sync=n, status="skipped", error=message) for n in names]
                raise _busy_error(exc, project) from None
            _failed(project, store, names, str(exc), started, clock, seen, trigger)
            raise
        except Exception as exc:  # a bug: still remembered and alerted, then raised
            _failed(project, store, names, f"unexpected {type(exc).__name__}: {exc}", started, clock, seen, trigger)
            raise
    _remember(store, result.runs, started, clock, seen, trigger)
    config = project.target.config.alerts
    if config is not None:
        _alert(project, alerts_for_runs(result.runs, config, trigger))
    return list(result.runs)


def _failed(
    project: Project, store: SchedulerStore, names: list[str], error: str, started: datetime, clock: Clock,
    seen: Mapping[str, Observations], trigger: str | None,
) -> None:
    """A run that could not start or raised: remember it (so it is retried with backoff) and alert."""
    _remember(store, [SyncRun(sync=n, status="error", error=error) for n in names], started, clock, seen, trigger)
    config = project.target.config.alerts
    if config is not None:
        _alert(project, alerts_for_error(names, error, config, trigger))


def _remember(
    store: SchedulerStore, runs: list[SyncRun], started: datetime, clock: Clock, seen: Mapping[str, Observations],
    trigger: str | None,
) -> None:
    finished = clock.now()
    changes: dict[str, Callable[[SyncMemory], SyncMemory]] = {}
    for run in runs:
        if run.status == "skipped":
            continue
        obs = seen.get(run.sync) or Observations()
        counts = {"added": run.added, "changed": run.changed, "removed": run.removed, "sent": run.sent,
                  "rejected": run.rejected, "failed": run.failed}

        def change(m: SyncMemory, run: SyncRun = run, obs: Observations = obs, counts: dict[str, int] = counts) -> SyncMemory:
            return m.with_run(
                started=started, finished=finished, status=run.status, run_id=run.run_id,
                trigger=trigger, undelivered=run.failed, fingerprint=obs.fingerprint,
                dbt_invocation=obs.dbt.invocation_id if obs.dbt else None, counts=counts,
            )

        changes[run.sync] = change
    if changes:
        store.update(changes)


def _alert(project: Project, alerts: list[Alert]) -> None:
    config = project.target.config.alerts
    if config is None or not alerts:
        return
    secrets = [s for d in project.destinations.values() for s in d.config.secret_values()]
    AlertSender(config, target=project.target.name, project=project.root.name, secrets=secrets).send(alerts)


__all__ = ["exact", "is_busy", "locked_sync", "observe"]
