"""``retl schedule``: the foreground loop that runs syncs when their schedules say so.

Each tick: reload the project (so edited syncs apply without a restart), look at the inputs of
event-triggered syncs whose poll interval passed, run every due sync one at a time (chained
``after`` syncs follow in the same tick), then sleep until the earliest next cron tick, interval,
poll or retry (at most ``max_idle_s``, so runs by other processes are noticed).

Between runs the scheduler holds nothing open: not the warehouse (DESIGN.md: other tools write
it), not the state store. Runs go through :func:`~reverse_etl.scheduler.execute.locked_sync`, so a
sync another process is running is skipped and retried later, never run twice at once.

Shutdown: the first SIGINT/SIGTERM stops scheduling and asks the running sync to stop after its
current chunk (every chunk is acknowledged into the snapshot as it completes, so nothing is lost
or sent twice); a second signal exits at once (still safe: an unacknowledged chunk is resent).
"""

from __future__ import annotations

import logging
import math
import signal
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from types import FrameType
from typing import Any

from reverse_etl.errors import ConfigError, RetlError
from reverse_etl.project import Project, SyncDef
from reverse_etl.results import Reporter, SyncRun, exit_code_of
from reverse_etl.scheduler.checks import after_order, check_schedules
from reverse_etl.scheduler.dbt import read_dbt_run
from reverse_etl.scheduler.execute import (
    RunnerFactory,
    default_runner,
    exact,
    is_busy,
    locked_sync,
    state_path,
)
from reverse_etl.scheduler.fingerprint import Fingerprinter
from reverse_etl.scheduler.state import SchedulerStore
from reverse_etl.scheduler.triggers import (
    Clock,
    Decision,
    Observations,
    SyncMemory,
    SystemClock,
    evaluate,
    needs_poll,
    next_check,
)

log = logging.getLogger("reverse_etl.scheduler")
DEFER_BASE = timedelta(seconds=5)
DEFER_MAX = timedelta(minutes=1)


class Scheduler:
    """Evaluates schedules and runs what is due. ``clock`` and ``runner_factory`` are seams for tests."""

    def __init__(
        self,
        load: Callable[[], Project],
        *,
        selectors: list[str] | None = None,
        once: bool = False,
        wait: bool = False,
        max_runs: int | None = None,
        max_idle_s: float = 60.0,
        clock: Clock | None = None,
        runner_factory: RunnerFactory = default_runner,
        reporter: Reporter | None = None,
        on_run: Callable[[SyncRun, Decision], None] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.load = load
        self.selectors = selectors
        self.once = once
        self.wait = wait
        self.max_runs = max_runs
        self.max_idle_s = max_idle_s
        self.clock = clock or SystemClock()
        self.runner_factory = runner_factory
        self.reporter = reporter
        self.on_run = on_run
        self.stop = stop or threading.Event()
        self.runs: list[SyncRun] = []
        self.project: Project | None = None
        self._polled: dict[str, datetime] = {}
        self._observed: dict[str, Observations] = {}
        self._deferred: dict[str, tuple[datetime, int]] = {}  # sync -> (not before, times deferred)
        self._cache: dict[str, Any] | None = None

    # --- the loop ------------------------------------------------------------------------
    def run(self) -> int:
        """Tick until stopped (or once, or ``max_runs`` runs); return an exit code like ``retl sync``."""
        restore = self._install_signals()
        try:
            while not self.stop.is_set():
                project = self.reload()
                self.tick(project)
                if self.once or self._enough():
                    break
                self.clock.wait(self._sleep_seconds(project), self.stop)
        finally:
            restore()
        return self.exit_code()

    def exit_code(self) -> int:
        return exit_code_of(self.runs)

    def _enough(self) -> bool:
        return self.max_runs is not None and len(self.runs) >= self.max_runs

    def reload(self) -> Project:
        """Load the project and check its schedules (keeping the last good one if it breaks later)."""
        try:
            project = self.load()
            check_schedules(project, self.scheduled(project))
        except RetlError as exc:
            if self.project is None:
                raise
            log.error("the project no longer loads; scheduling with the previous configuration:\n%s", exc)
            return self.project
        if not self.scheduled(project):
            raise ConfigError("no selected sync has a `schedule:`", hint="add e.g. `schedule: {every: 15m}` to a sync")
        self.project = project
        return project

    def scheduled(self, project: Project) -> list[SyncDef]:
        """The selected syncs that have a schedule, chained ones after what they follow."""
        return after_order([s for s in project.select(self.selectors) if s.config.schedule is not None])

    # --- one tick ------------------------------------------------------------------------
    def tick(self, project: Project) -> list[SyncRun]:
        """Run everything due now, one sync at a time; return the runs (skipped ones included)."""
        syncs = self.scheduled(project)
        store = SchedulerStore.for_state(state_path(project))
        now = self.clock.now()
        memory = store.load()
        unseen = [s.name for s in syncs if (memory.get(s.name) or SyncMemory()).first_seen is None]
        if unseen:
            memory = store.update({name: (lambda m: replace(m, first_seen=now)) for name in unseen})
        done: set[str] = set()
        out: list[SyncRun] = []
        while not self.stop.is_set() and not self._enough():
            picked = self._pick(project, syncs, memory, now, done)
            if picked is None:
                break
            sync, decision = picked
            done.add(sync.name)
            log.info("sync %s is due: %s", sync.name, decision.reason)
            for run in self._execute(project, sync, decision):
                out.append(run)
                if run.status != "skipped":
                    self.runs.append(run)
                    if run.run_id is not None:
                        self._deferred.pop(run.sync, None)
                else:
                    self._defer(run.sync, now)
                if self.on_run is not None:
                    self.on_run(run, decision)
            memory = store.load()
            now = self.clock.now()
        self._persist_cache(store)
        return out

    def _pick(
        self, project: Project, syncs: list[SyncDef], memory: dict[str, SyncMemory], now: datetime, done: set[str]
    ) -> tuple[SyncDef, Decision] | None:
        for sync in syncs:
            if sync.name in done or self._deferred.get(sync.name, (now, 0))[0] > now:
                continue
            schedule = sync.config.schedule
            assert schedule is not None
            observed = self._observe(project, sync, now)
            decision = evaluate(schedule, memory.get(sync.name) or SyncMemory(), now, upstream=memory, observed=observed)
            if decision.due:
                return sync, decision
        return None

    def _execute(self, project: Project, sync: SyncDef, decision: Decision) -> list[SyncRun]:
        schedule = sync.config.schedule
        assert schedule is not None
        observed = self._observed.get(sync.name) or Observations()

        def still_due(name: str, memory: SyncMemory) -> bool:
            # Another process may have run it between our look and our lock.
            upstream = SchedulerStore.for_state(state_path(project)).load()
            return evaluate(schedule, memory, self.clock.now(), upstream=upstream, observed=observed).due

        try:
            result = locked_sync(
                project, [exact(sync.name)], reporter=self.reporter, trigger=f"schedule:{decision.trigger}",
                wait=math.inf if self.wait else 0.0, stop=self.stop, busy="skip", observed={sync.name: observed},
                still_due=still_due, runner_factory=self.runner_factory, clock=self.clock,
            )
        except Exception as exc:
            # Recorded and alerted by locked_sync; an unattended scheduler carries on (even past a
            # bug, logged with its traceback) and does not try this sync again at once.
            if isinstance(exc, RetlError):
                log.error("sync %s failed: %s", sync.name, exc)
            else:
                log.exception("sync %s failed unexpectedly; please report this", sync.name)
            self._defer(sync.name, self.clock.now())
            return [SyncRun(sync=sync.name, status="error", error=str(exc))]
        return list(result.runs)

    def _defer(self, name: str, now: datetime) -> None:
        _, times = self._deferred.get(name, (now, 0))
        delay = min(DEFER_MAX, DEFER_BASE * (2**min(times, 8)))
        self._deferred[name] = (now + delay, times + 1)

    # --- observations ----------------------------------------------------------------------
    def _observe(self, project: Project, sync: SyncDef, now: datetime) -> Observations:
        schedule = sync.config.schedule
        assert schedule is not None
        if not needs_poll(schedule, now, self._polled.get(sync.name)):
            return self._observed.get(sync.name) or Observations()
        self._polled[sync.name] = now
        store = SchedulerStore.for_state(state_path(project))
        if self._cache is None:
            self._cache = store.cache()
        fingerprints = Fingerprinter(project, self._cache)
        fingerprint = dbt = None
        try:
            if schedule.when_changed:
                fingerprint = fingerprints.fingerprint(sync).digest
            if schedule.after_dbt:
                dbt = read_dbt_run(project.path(schedule.after_dbt), fingerprints.inputs(sync).table_names)
        except Exception as exc:  # a failed look is "not due now", never the end of the scheduler
            # A warehouse held by a writer (dbt) is normal: look again at the next poll.
            log.log(logging.INFO if is_busy(exc) else logging.WARNING,
                    "sync %s: could not look at its inputs now: %s", sync.name, str(exc).split("\n")[0])
        observed = Observations(fingerprint, dbt)
        self._observed[sync.name] = observed
        return observed

    def _persist_cache(self, store: SchedulerStore) -> None:
        if self._cache is None:
            return
        if store.cache() != self._cache:
            store.update(cache=self._cache)

    # --- sleeping ------------------------------------------------------------------------
    def _sleep_seconds(self, project: Project) -> float:
        now = self.clock.now()
        memory = SchedulerStore.for_state(state_path(project)).load()
        times = [now + timedelta(seconds=self.max_idle_s)]
        for sync in self.scheduled(project):
            assert sync.config.schedule is not None
            at = next_check(sync.config.schedule, memory.get(sync.name) or SyncMemory(), now,
                            last_polled=self._polled.get(sync.name))
            deferred = self._deferred.get(sync.name)
            if deferred is not None and (at is None or deferred[0] > at):
                at = deferred[0]
            if at is not None:
                times.append(at)
        return max(0.05, (min(times) - now).total_seconds())

    # --- signals -------------------------------------------------------------------------
    def _install_signals(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

        def handle(signum: int, frame: FrameType | None) -> None:
            if self.stop.is_set():
                raise KeyboardInterrupt
            log.warning("%s: stopping; a running sync stops after its current chunk (signal again to exit now)",
                        signal.Signals(signum).name)
            self.stop.set()

        for sig in previous:
            signal.signal(sig, handle)

        def restore() -> None:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

        return restore
