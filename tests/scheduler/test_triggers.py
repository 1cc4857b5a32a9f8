"""The due-logic of every trigger, with explicit times (no clocks, no files)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from reverse_etl.config.syncs import ScheduleConfig
from reverse_etl.scheduler.triggers import (
    DbtRun,
    Observations,
    SyncMemory,
    evaluate,
    latest_tick,
    needs_poll,
    next_check,
    retry_delay,
)

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def sched(**kwargs: Any) -> ScheduleConfig:
    return ScheduleConfig(**kwargs)


def ran(at: datetime, status: str = "success", **kwargs: Any) -> SyncMemory:
    return SyncMemory(first_seen=at - timedelta(days=1)).with_run(
        started=at, finished=at + timedelta(seconds=5), status=status, run_id="r", trigger="t", **kwargs
    )


def test_cron_fires_once_per_tick_after_the_last_run() -> None:
    hourly = sched(cron="0 * * * *")
    memory = ran(T0)  # ran at 09:30
    assert not evaluate(hourly, memory, T0 + timedelta(minutes=29)).due  # 09:59
    decision = evaluate(hourly, memory, T0 + timedelta(minutes=30))  # 10:00 exactly
    assert decision.due and decision.trigger == "cron"
    after_run = ran(T0 + timedelta(minutes=30))
    assert not evaluate(hourly, after_run, T0 + timedelta(minutes=45)).due


def test_cron_missed_ticks_collapse_into_one_run() -> None:
    hourly = sched(cron="0 * * * *")
    memory = ran(T0)
    down_until = T0 + timedelta(hours=7, minutes=-20)  # 16:10: seven ticks missed while down
    assert evaluate(hourly, memory, down_until).due
    caught_up = ran(down_until)
    assert not evaluate(hourly, caught_up, down_until + timedelta(minutes=49, seconds=59)).due
    assert evaluate(hourly, caught_up, down_until + timedelta(minutes=50)).due  # the next tick, once


def test_cron_never_run_waits_for_its_first_tick_after_first_seen() -> None:
    daily = sched(cron="0 6 * * *")
    seen = SyncMemory(first_seen=T0)  # 09:30
    assert not evaluate(daily, seen, T0 + timedelta(hours=20)).due  # 05:30 next day
    assert evaluate(daily, seen, T0 + timedelta(hours=20, minutes=30)).due  # 06:00


def test_cron_honours_the_time_zone_across_dst() -> None:
    # 06:00 in New York: 11:00 UTC in winter, 10:00 UTC after DST starts (2026-03-08).
    ny = sched(cron="0 6 * * *", tz="America/New_York")
    before = datetime(2026, 3, 6, 10, 59, tzinfo=UTC)
    assert latest_tick("0 6 * * *", ny_zone(), before).astimezone(UTC) == datetime(2026, 3, 5, 11, 0, tzinfo=UTC)
    after_dst = datetime(2026, 3, 9, 10, 0, 1, tzinfo=UTC)
    memory = ran(datetime(2026, 3, 8, 12, 0, tzinfo=UTC))
    assert evaluate(ny, memory, after_dst).due
    assert not evaluate(ny, memory, after_dst - timedelta(seconds=2)).due
    utc = sched(cron="0 6 * * *")
    assert evaluate(utc, memory, after_dst - timedelta(seconds=2)).due  # 06:00 UTC is long past by then


def ny_zone() -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo("America/New_York")


def test_every_runs_at_once_then_per_interval_and_collapses_missed_runs() -> None:
    quarter = sched(every="15m")
    first = evaluate(quarter, SyncMemory(first_seen=T0), T0)
    assert first.due and "never ran" in first.reason
    memory = ran(T0)
    assert not evaluate(quarter, memory, T0 + timedelta(minutes=14, seconds=59)).due
    assert evaluate(quarter, memory, T0 + timedelta(minutes=15)).due
    late = T0 + timedelta(hours=5)
    assert evaluate(quarter, memory, late).due
    assert not evaluate(quarter, ran(late), late + timedelta(minutes=1)).due


def test_when_changed_needs_a_new_fingerprint() -> None:
    changed = sched(when_changed=True)
    assert evaluate(changed, SyncMemory(), T0, observed=Observations(fingerprint="a")).due  # never ran
    assert not evaluate(changed, SyncMemory(), T0).due  # could not look: not due
    memory = ran(T0, fingerprint="a")
    assert not evaluate(changed, memory, T0 + timedelta(hours=1), observed=Observations(fingerprint="a")).due
    decision = evaluate(changed, memory, T0 + timedelta(hours=1), observed=Observations(fingerprint="b"))
    assert decision.due and decision.trigger == "when_changed"


def test_after_runs_once_every_upstream_completed_since_its_own_last_run() -> None:
    chained = sched(after=["a", "b"])
    a_done = ran(T0)
    b_done = ran(T0 + timedelta(minutes=1))
    assert not evaluate(chained, SyncMemory(), T0, upstream={"a": a_done}).due  # b never ran
    assert evaluate(chained, SyncMemory(), T0, upstream={"a": a_done, "b": b_done}).due
    me = ran(T0 + timedelta(minutes=2))
    assert not evaluate(chained, me, T0 + timedelta(minutes=3), upstream={"a": a_done, "b": b_done}).due
    a_again = ran(T0 + timedelta(minutes=10))
    assert not evaluate(chained, me, T0 + timedelta(minutes=11), upstream={"a": a_again, "b": b_done}).due
    b_again = ran(T0 + timedelta(minutes=12))
    assert evaluate(chained, me, T0 + timedelta(minutes=13), upstream={"a": a_again, "b": b_again}).due


def test_after_ignores_upstream_runs_that_failed() -> None:
    chained = sched(after=["a"])
    failed = ran(T0, status="error")
    assert failed.last_completed is None
    assert not evaluate(chained, SyncMemory(), T0, upstream={"a": failed}).due
    partial = ran(T0, status="partial")
    assert evaluate(chained, SyncMemory(), T0, upstream={"a": partial}).due


def test_after_dbt_follows_new_relevant_invocations_only() -> None:
    dbt = sched(after_dbt="target/run_results.json")
    run1 = DbtRun("inv-1", "2026-03-02T09:00:00Z", frozenset({"orders"}), relevant=True)
    assert evaluate(dbt, SyncMemory(), T0, observed=Observations(dbt=run1)).due
    memory = ran(T0, dbt_invocation="inv-1")
    assert not evaluate(dbt, memory, T0, observed=Observations(dbt=run1)).due
    other = DbtRun("inv-2", "2026-03-02T10:00:00Z", frozenset({"unrelated"}), relevant=False)
    assert not evaluate(dbt, memory, T0, observed=Observations(dbt=other)).due
    run3 = DbtRun("inv-3", "2026-03-02T11:00:00Z", frozenset({"orders"}), relevant=True)
    decision = evaluate(dbt, memory, T0, observed=Observations(dbt=run3))
    assert decision.due and decision.trigger == "after_dbt" and "inv-3" in decision.reason


def test_failed_runs_are_retried_with_backoff_but_guard_trips_are_not() -> None:
    changed = sched(when_changed=True)
    observed = Observations(fingerprint="a")
    failed = ran(T0, status="error", fingerprint="a")
    finished = failed.last_finished
    assert finished is not None
    assert not evaluate(changed, failed, finished + timedelta(seconds=59), observed=observed).due
    retry = evaluate(changed, failed, finished + timedelta(minutes=1), observed=observed)
    assert retry.due and retry.trigger == "retry"
    twice = failed.with_run(started=T0, finished=finished, status="error", run_id="r2", trigger="retry")
    assert twice.failures == 2
    assert not evaluate(changed, twice, finished + timedelta(seconds=119), observed=observed).due
    assert evaluate(changed, twice, finished + timedelta(minutes=2), observed=observed).due
    guard = ran(T0, status="guard", fingerprint="a")
    assert not evaluate(changed, guard, T0 + timedelta(days=1), observed=observed).due
    undelivered = ran(T0, status="partial", fingerprint="a", undelivered=3)
    assert evaluate(changed, undelivered, T0 + timedelta(minutes=2), observed=observed).due
    assert retry_delay(40) == timedelta(hours=1)


def test_a_successful_run_resets_the_failure_count() -> None:
    failed = ran(T0, status="error")
    assert failed.with_run(started=T0, finished=T0, status="success", run_id="x", trigger=None).failures == 0


def test_next_check_is_the_earliest_of_the_triggers() -> None:
    both = sched(cron="0 * * * *", when_changed=True, poll="5m")
    memory = ran(T0)
    assert next_check(both, memory, T0, last_polled=T0) == T0 + timedelta(minutes=5)
    assert next_check(both, memory, T0 + timedelta(minutes=26), last_polled=T0 + timedelta(minutes=26)) == T0 + timedelta(minutes=30)
    assert next_check(sched(after=["a"]), memory, T0, last_polled=None) is None
    assert next_check(sched(every="15m"), memory, T0, last_polled=None) == T0 + timedelta(minutes=15)


def test_needs_poll_respects_the_poll_interval() -> None:
    polled = sched(when_changed=True, poll="30s")
    assert needs_poll(polled, T0, None)
    assert not needs_poll(polled, T0 + timedelta(seconds=29), T0)
    assert needs_poll(polled, T0 + timedelta(seconds=30), T0)
    assert not needs_poll(sched(every="1m"), T0, None)
    assert needs_poll(sched(when_changed=True), T0 + timedelta(minutes=1), T0)  # default poll 1m


def test_memory_round_trips_through_json() -> None:
    memory = ran(T0, fingerprint="f", dbt_invocation="i", counts={"sent": 3})
    assert SyncMemory.from_json(memory.as_json()) == memory
