"""The scheduler loop with a fake clock and a fake runner: real project, files, locks and memory."""

from __future__ import annotations

import itertools
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from reverse_etl.errors import ConfigError
from reverse_etl.project import Project
from reverse_etl.results import SyncRun
from reverse_etl.scheduler import Decision, Scheduler, SyncLock
from reverse_etl.scheduler.execute import locked_sync
from reverse_etl.scheduler.state import SchedulerStore, locks_dir
from tests.scheduler.conftest import FakeClock, FakeRunner, people_project, write_people


def make(root: Path, clock: FakeClock, runner: FakeRunner, **kwargs: Any) -> Scheduler:
    return Scheduler(lambda: Project.load(root), clock=clock, runner_factory=runner.factory, **kwargs)


def test_every_runs_at_start_then_once_after_downtime(tmp_path: Path, clock: FakeClock) -> None:
    people_project(tmp_path, {"quarterly": {"every": "15m"}})
    runner = FakeRunner(clock)
    scheduler = make(tmp_path, clock, runner)
    project = scheduler.reload()
    scheduler.tick(project)
    clock.advance(minutes=10)
    scheduler.tick(project)
    assert runner.names == ["quarterly"]
    clock.advance(hours=5)  # 20 intervals missed
    scheduler.tick(project)
    scheduler.tick(project)
    assert runner.names == ["quarterly", "quarterly"]
    assert runner.calls[0][1] == "schedule:every"


def test_the_loop_sleeps_until_the_next_run(tmp_path: Path, clock: FakeClock) -> None:
    people_project(tmp_path, {"quarterly": {"every": "15m"}})
    runner = FakeRunner(clock)
    code = make(tmp_path, clock, runner, max_runs=3).run()
    assert code == 0
    starts = [c[2] for c in runner.calls]
    assert [b - a for a, b in itertools.pairwise(starts)] == [timedelta(minutes=15)] * 2
    assert all(s <= 900 for s in clock.sleeps)


def test_cron_waits_for_its_tick_in_its_time_zone(tmp_path: Path, clock: FakeClock) -> None:
    # START is 09:30 UTC = 10:30 in Berlin; the sync runs at 11:00 Berlin time = 10:00 UTC.
    people_project(tmp_path, {"berlin": {"cron": "0 11 * * *", "tz": "Europe/Berlin"}})
    runner = FakeRunner(clock)
    scheduler = make(tmp_path, clock, runner)
    project = scheduler.reload()
    scheduler.tick(project)
    assert runner.names == []  # first seen: wait for the next tick, do not run at once
    clock.advance(minutes=29)
    scheduler.tick(project)
    assert runner.names == []
    clock.advance(minutes=1)
    scheduler.tick(project)
    assert runner.names == ["berlin"]
    clock.advance(days=3)  # three ticks missed
    scheduler.tick(project)
    scheduler.tick(project)
    assert runner.names == ["berlin", "berlin"]


def test_when_changed_runs_only_after_the_data_changed(tmp_path: Path, clock: FakeClock) -> None:
    people_project(tmp_path, {"people": {"when_changed": True, "poll": "30s"}})
    runner = FakeRunner(clock)
    scheduler = make(tmp_path, clock, runner)
    project = scheduler.reload()
    scheduler.tick(project)
    assert [c[1] for c in runner.calls] == ["schedule:when_changed"]  # never ran
    for _ in range(3):
        clock.advance(seconds=30)
        scheduler.tick(project)
    assert len(runner.calls) == 1
    write_people(tmp_path, [("u1", "pro", 10.0), ("u2", "pro", 99.0)])
    clock.advance(seconds=10)
    scheduler.tick(project)
    assert len(runner.calls) == 1  # not polled yet: the poll interval is 30s
    clock.advance(seconds=20)
    scheduler.tick(project)
    assert len(runner.calls) == 2
    clock.advance(seconds=30)
    scheduler.tick(project)
    assert len(runner.calls) == 2  # one run per change


def test_after_chains_run_in_the_same_tick_in_order(tmp_path: Path, clock: FakeClock) -> None:
    people_project(tmp_path, {"c": {"after": ["b"]}, "b": {"after": ["a"]}, "a": {"every": "1h"}})
    runner = FakeRunner(clock)
    scheduler = make(tmp_path, clock, runner)
    project = scheduler.reload()
    scheduler.tick(project)
    assert runner.names == ["a", "b", "c"]
    assert [c[1] for c in runner.calls] == ["schedule:every", "schedule:after", "schedule:after"]
    clock.advance(minutes=30)
    scheduler.tick(project)
    assert runner.names == ["a", "b", "c"]


def test_after_does_not_follow_a_failed_upstream(tmp_path: Path, clock: FakeClock) -> None:
    people_project(tmp_path, {"a": {"every": "1h"}, "b": {"after": ["a"]}})
    runner = FakeRunner(clock, status="error")
    scheduler = make(tmp_path, clock, runner, once=True)
    assert scheduler.run() == 1
    assert runner.names == ["a"]


def test_after_dbt_runs_once_per_relevant_dbt_invocation(tmp_path: Path, clock: FakeClock) -> None:
    people_project(tmp_path, {"people": {"after_dbt": "target/run_results.json", "poll": "10s"}})
    results = tmp_path / "target" / "run_results.json"
    runner = FakeRunner(clock)
    scheduler = make(tmp_path, clock, runner)
    project = scheduler.reload()
    scheduler.tick(project)
    assert runner.names == []  # no dbt run yet

    def dbt_run(invocation: str) -> None:
        results.parent.mkdir(exist_ok=True)
        results.write_bytes(orjson.dumps({
            "metadata": {"invocation_id": invocation, "generated_at": "2026-03-02T09:31:00Z"},
            "results": [{"unique_id": "model.shop.stg_people", "status": "success"}],
        }))

    dbt_run("inv-1")
    clock.advance(seconds=10)
    scheduler.tick(project)
    clock.advance(seconds=10)
    scheduler.tick(project)
    assert [c[1] for c in runner.calls] == ["schedule:after_dbt"]
    dbt_run("inv-2")
    clock.advance(seconds=10)
    scheduler.tick(project)
    assert len(runner.calls) == 2


def test_a_sync_running_elsewhere_is_skipped_then_retried(tmp_path: Path, clock: FakeClock) -> None:
    people_project(tmp_path, {"people": {"every": "15m"}})
    runner = FakeRunner(clock)
    seen: list[tuple[str, str]] = []
    scheduler = make(tmp_path, clock, runner, on_run=lambda run, d: seen.append((run.sync, run.status)))
    project = scheduler.reload()
    other = SyncLock(locks_dir(tmp_path / ".retl" / "state.duckdb"), "people", heartbeat=False)
    other.acquire()
    runs = scheduler.tick(project)
    assert [(r.status, "already running" in (r.error or "")) for r in runs] == [("skipped", True)]
    assert runner.names == [] and seen == [("people", "skipped")]
    other.release()
    clock.advance(seconds=2)
    scheduler.tick(project)
    assert runner.names == []  # deferred a few seconds, not retried in a busy loop
    clock.advance(seconds=5)
    scheduler.tick(project)
    assert runner.names == ["people"]


def test_a_sync_another_process_just_ran_is_not_run_again(tmp_path: Path, clock: FakeClock) -> None:
    people_project(tmp_path, {"people": {"every": "15m"}})
    runner = FakeRunner(clock)
    project = Project.load(tmp_path)
    result = locked_sync(project, ["people"], runner_factory=runner.factory, clock=clock, still_due=lambda name, m: False)
    assert result.runs == [] and runner.names == []


def test_memory_is_shared_between_processes(tmp_path: Path, clock: FakeClock) -> None:
    people_project(tmp_path, {"people": {"every": "15m"}})
    runner = FakeRunner(clock)
    assert make(tmp_path, clock, runner, once=True).run() == 0
    clock.advance(minutes=5)
    assert make(tmp_path, clock, runner, once=True).run() == 0  # a new process: remembers the run
    assert runner.names == ["people"]
    memory = SchedulerStore.for_state(tmp_path / ".retl" / "state.duckdb").memory("people")
    assert memory.last_status == "success" and memory.last_trigger == "schedule:every"


def test_failures_are_retried_with_backoff(tmp_path: Path, clock: FakeClock) -> None:
    people_project(tmp_path, {"people": {"when_changed": True, "poll": "10s"}})
    runner = FakeRunner(clock, status="error")
    scheduler = make(tmp_path, clock, runner)
    project = scheduler.reload()
    scheduler.tick(project)
    clock.advance(seconds=30)
    scheduler.tick(project)
    assert len(runner.calls) == 1
    clock.advance(seconds=31)
    scheduler.tick(project)
    assert [c[1] for c in runner.calls] == ["schedule:when_changed", "schedule:retry"]
    assert scheduler.exit_code() == 1


def test_stop_ends_the_loop_and_max_runs_bounds_it(tmp_path: Path, clock: FakeClock) -> None:
    people_project(tmp_path, {"people": {"every": "1m"}})
    stop = threading.Event()
    runner = FakeRunner(clock)
    decisions: list[Decision] = []

    def on_run(run: SyncRun, decision: Decision) -> None:
        decisions.append(decision)
        if len(decisions) == 2:
            stop.set()

    assert make(tmp_path, clock, runner, stop=stop, on_run=on_run).run() == 0
    assert len(runner.calls) == 2


def test_schedule_problems_are_config_errors(tmp_path: Path, clock: FakeClock) -> None:
    people_project(tmp_path, {
        "a": {"cron": "every day", "tz": "Mars/Olympus"}, "b": {"after": ["c", "nope"]}, "c": {"after": ["b"]},
        "d": {"every": "5m", "poll": "1m"},
    })
    with pytest.raises(ConfigError) as caught:
        make(tmp_path, clock, FakeRunner(clock)).reload()
    text = str(caught.value)
    for expected in ("'every day' is not a cron", "'Mars/Olympus' is not a time zone", "'nope', which is not a sync",
                     "cycle", "poll only applies"):
        assert expected in text


def test_no_scheduled_sync_is_an_error(tmp_path: Path, clock: FakeClock) -> None:
    people_project(tmp_path, {"people": {"every": "15m"}})
    yml = tmp_path / "syncs" / "people.yml"
    yml.write_text(yml.read_text().replace("  schedule:\n    every: 15m\n", ""))
    with pytest.raises(ConfigError, match="no selected sync has a `schedule:`"):
        make(tmp_path, clock, FakeRunner(clock)).reload()


@pytest.mark.parametrize(("status", "code"), [("success", 0), ("skipped", 0), ("interrupted", 1), ("guard", 1)])
def test_once_exits_like_retl_sync(tmp_path: Path, clock: FakeClock, status: str, code: int) -> None:
    people_project(tmp_path, {"people": {"every": "1m"}})
    scheduler = make(tmp_path, clock, FakeRunner(clock, status=status), once=True)
    assert scheduler.run() == code
