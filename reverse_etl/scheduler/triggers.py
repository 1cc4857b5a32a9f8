"""When is a sync due? Pure functions of its schedule, what the scheduler remembers, and the time.

Nothing here reads files or clocks: the loop observes (a fingerprint of the model's inputs, the
newest dbt run) and passes the observations in, so every rule is tested with a fake clock.

The triggers of one ``schedule:`` are alternatives: the sync is due when any of them fires.

- ``cron`` fires once for the latest tick at or before now that is later than the last run (or
  than when the scheduler first saw the sync). Ticks missed while nothing was running collapse
  into that one run.
- ``every`` fires when the interval has passed since the last run started (at once if never run).
- ``when_changed`` fires when the inputs' fingerprint differs from the one taken as the last run
  started (at once if never run).
- ``after`` fires when every listed sync completed (success or partial) after this one last started.
- ``after_dbt`` fires for a dbt invocation newer than the last one synced that built a relation
  the model reads.
- A run that ended in ``error`` or ``interrupted``, or left rows undelivered, is retried with
  exponential backoff (1m, 2m, 4m ... 1h) even if no trigger fires, because the event that
  triggered it will not come again. A guard trip is not retried: it needs a person.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from reverse_etl.config.durations import parse_duration
from reverse_etl.config.syncs import ScheduleConfig

DEFAULT_POLL = timedelta(minutes=1)
RETRY_BASE = timedelta(minutes=1)
RETRY_MAX = timedelta(hours=1)
COMPLETED = ("success", "partial")
RETRIED = ("error", "interrupted")


class Clock(Protocol):
    """Time as the scheduler sees it; tests pass a fake one."""

    def now(self) -> datetime:
        """The current time, timezone aware."""

    def wait(self, seconds: float, stop: threading.Event) -> bool:
        """Sleep up to ``seconds``; return True early if ``stop`` is set."""


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def wait(self, seconds: float, stop: threading.Event) -> bool:
        return stop.wait(max(0.0, seconds))

    @staticmethod
    def epoch() -> float:
        return time.time()


@dataclass(frozen=True)
class SyncMemory:
    """What the scheduler remembers of one sync between ticks (and between processes)."""

    first_seen: datetime | None = None
    last_started: datetime | None = None
    last_finished: datetime | None = None
    last_completed: datetime | None = None  # finish of the last success/partial run
    last_status: str | None = None
    last_run_id: str | None = None
    last_trigger: str | None = None
    failures: int = 0  # consecutive runs that are retried (see RETRIED)
    fingerprint: str | None = None  # the inputs as the last run started
    dbt_invocation: str | None = None  # the dbt run the last run started after
    counts: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            out[name] = value.isoformat() if isinstance(value, datetime) else value
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SyncMemory:
        kwargs: dict[str, Any] = {}
        for name, spec in cls.__dataclass_fields__.items():
            if name not in data:
                continue
            value = data[name]
            if isinstance(value, str) and "datetime" in str(spec.type):
                value = datetime.fromisoformat(value)
            kwargs[name] = value
        return cls(**kwargs)

    def with_run(
        self, *, started: datetime, finished: datetime, status: str, run_id: str | None, trigger: str | None,
        undelivered: int = 0, fingerprint: str | None = None, dbt_invocation: str | None = None,
        counts: dict[str, int] | None = None,
    ) -> SyncMemory:
        """This memory after a run; ``fingerprint``/``dbt_invocation`` None keep the old ones."""
        retried = status in RETRIED or undelivered > 0
        return replace(
            self,
            last_started=started,
            last_finished=finished,
            last_completed=finished if status in COMPLETED else self.last_completed,
            last_status=status,
            last_run_id=run_id,
            last_trigger=trigger,
            failures=self.failures + 1 if retried else 0,
            fingerprint=fingerprint if fingerprint is not None else self.fingerprint,
            dbt_invocation=dbt_invocation if dbt_invocation is not None else self.dbt_invocation,
            counts=dict(counts or {}),
        )


@dataclass(frozen=True)
class DbtRun:
    """The newest dbt invocation found in run_results.json, reduced to what triggers need."""

    invocation_id: str
    generated_at: str
    built: frozenset[str]  # lower-cased names of relations built successfully
    relevant: bool  # built one of the relations the sync's model reads


@dataclass(frozen=True)
class Observations:
    """What the loop looked at for one sync this tick (None: not looked at, or unavailable)."""

    fingerprint: str | None = None
    dbt: DbtRun | None = None


@dataclass(frozen=True)
class Decision:
    due: bool
    trigger: str | None = None  # cron | every | when_changed | after | after_dbt | retry
    reason: str = ""


NOT_DUE = Decision(False)


# --- parsing helpers ---------------------------------------------------------------------
def zone(schedule: ScheduleConfig) -> ZoneInfo:
    """The schedule's time zone (UTC unless ``tz:``)."""
    return ZoneInfo(schedule.tz or "UTC")


def poll_interval(schedule: ScheduleConfig) -> timedelta:
    return timedelta(seconds=parse_duration(schedule.poll)) if schedule.poll else DEFAULT_POLL


def every_interval(schedule: ScheduleConfig) -> timedelta | None:
    return timedelta(seconds=parse_duration(schedule.every)) if schedule.every else None


def _cron(expr: str, start: datetime) -> Any:
    from croniter import croniter  # loaded by the first schedule read, not by every retl sync

    return croniter(expr, start)


def latest_tick(expr: str, tz: ZoneInfo, now: datetime) -> datetime:
    """The latest cron tick at or before ``now`` (croniter's get_prev is strictly before)."""
    start = now.astimezone(tz) + timedelta(microseconds=1)
    tick: datetime = _cron(expr, start).get_prev(datetime)
    return tick


def next_tick(expr: str, tz: ZoneInfo, now: datetime) -> datetime:
    tick: datetime = _cron(expr, now.astimezone(tz)).get_next(datetime)
    return tick


def retry_delay(failures: int) -> timedelta:
    if failures <= 0:
        return timedelta(0)
    return min(RETRY_MAX, RETRY_BASE * (2 ** min(failures - 1, 16)))


# --- the rules ---------------------------------------------------------------------------
def evaluate(
    schedule: ScheduleConfig,
    memory: SyncMemory,
    now: datetime,
    *,
    upstream: Mapping[str, SyncMemory] | None = None,
    observed: Observations | None = None,
) -> Decision:
    """Whether a sync with ``schedule`` is due at ``now``, and which trigger says so."""
    observed = observed or Observations()
    upstream = upstream or {}
    if schedule.cron:
        baseline = memory.last_started or memory.first_seen
        tick = latest_tick(schedule.cron, zone(schedule), now)
        if baseline is not None and tick > baseline:
            return Decision(True, "cron", f"cron {schedule.cron!r} tick {tick.isoformat()}")
    interval = every_interval(schedule)
    if interval is not None and (memory.last_started is None or now >= memory.last_started + interval):
        return Decision(True, "every", f"every {schedule.every}" + ("" if memory.last_started else " (never ran)"))
    if schedule.after:
        decision = _after(schedule.after, memory, upstream)
        if decision.due:
            return decision
    if schedule.after_dbt and observed.dbt is not None:
        run = observed.dbt
        if run.invocation_id != memory.dbt_invocation and run.relevant:
            return Decision(True, "after_dbt", f"dbt run {run.invocation_id} at {run.generated_at}")
    if schedule.when_changed and observed.fingerprint is not None:
        if memory.last_started is None:
            return Decision(True, "when_changed", "never ran")
        if observed.fingerprint != memory.fingerprint:
            return Decision(True, "when_changed", "its inputs changed")
    if memory.failures and memory.last_finished and now >= memory.last_finished + retry_delay(memory.failures):
        return Decision(True, "retry", f"retry #{memory.failures} after {memory.last_status}")
    return NOT_DUE


def _after(names: list[str], memory: SyncMemory, upstream: Mapping[str, SyncMemory]) -> Decision:
    done: list[str] = []
    for name in names:
        other = upstream.get(name)
        if other is None or other.last_completed is None:
            return NOT_DUE
        if memory.last_started is not None and other.last_completed <= memory.last_started:
            return NOT_DUE
        done.append(name)
    return Decision(True, "after", f"after {', '.join(done)}")


def next_check(
    schedule: ScheduleConfig, memory: SyncMemory, now: datetime, *, last_polled: datetime | None
) -> datetime | None:
    """When this sync's triggers should be looked at again; None when only other syncs' runs
    (``after``) can make it due."""
    times: list[datetime] = []
    if schedule.cron:
        times.append(next_tick(schedule.cron, zone(schedule), now))
    interval = every_interval(schedule)
    if interval is not None:
        times.append(memory.last_started + interval if memory.last_started else now)
    if schedule.when_changed or schedule.after_dbt:
        times.append(last_polled + poll_interval(schedule) if last_polled else now)
    if memory.failures and memory.last_finished is not None:
        times.append(memory.last_finished + retry_delay(memory.failures))
    return min(times) if times else None


def needs_poll(schedule: ScheduleConfig, now: datetime, last_polled: datetime | None) -> bool:
    """Whether ``when_changed`` / ``after_dbt`` should look at the inputs now."""
    if not (schedule.when_changed or schedule.after_dbt):
        return False
    return last_polled is None or now >= last_polled + poll_interval(schedule)


__all__ = [
    "DEFAULT_POLL",
    "Clock",
    "DbtRun",
    "Decision",
    "Observations",
    "SyncMemory",
    "SystemClock",
    "evaluate",
    "latest_tick",
    "needs_poll",
    "next_check",
    "next_tick",
    "poll_interval",
    "retry_delay",
]
