"""Scheduler test kit: a fake clock, a fake runner and a small project that reads a CSV file."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from reverse_etl.plan import PlanFile
from reverse_etl.project import Project
from reverse_etl.results import Reporter, SyncResult, SyncRun
from tests.helpers import records_sync, write_project

START = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)  # a Monday


class FakeClock:
    """Time that moves only when told to, or when the scheduler sleeps."""

    def __init__(self, start: datetime = START) -> None:
        self.t = start
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        return self.t

    def wait(self, seconds: float, stop: threading.Event) -> bool:
        self.sleeps.append(seconds)
        self.t += timedelta(seconds=seconds)
        return stop.is_set()

    def advance(self, **kwargs: float) -> None:
        self.t += timedelta(**kwargs)


class FakeRunner:
    """Stands in for the Runner: records which syncs ran and when, sends nothing."""

    def __init__(self, clock: FakeClock, status: str = "success", rejected: int = 0) -> None:
        self.clock = clock
        self.status = status
        self.rejected = rejected
        self.calls: list[tuple[str, str | None, datetime]] = []

    def factory(self, project: Project, reporter: Reporter | None, should_stop: Any) -> FakeRunner:
        self.project = project
        return self

    def sync(self, selectors: list[str] | None = None, *, full_resync: bool = False, force: bool = False,
             plan_file: PlanFile | None = None, trigger: str | None = None) -> SyncResult:
        runs = []
        for sync in self.project.select(selectors):
            self.calls.append((sync.name, trigger, self.clock.now()))
            runs.append(SyncRun(sync=sync.name, status=self.status, run_id=uuid.uuid4().hex[:12], rejected=self.rejected))
        return SyncResult(runs)

    @property
    def names(self) -> list[str]:
        return [c[0] for c in self.calls]


PEOPLE_SQL = """
    SELECT CAST(id AS VARCHAR) AS user_id, plan, CAST(ltv AS DOUBLE) AS ltv
    FROM read_csv('data/people.csv', header = true, all_varchar = true)
"""


def write_people(root: Path, rows: list[tuple[str, str, float]]) -> None:
    (root / "data").mkdir(exist_ok=True)
    lines = ["id,plan,ltv", *(f"{i},{p},{v}" for i, p, v in rows)]
    (root / "data" / "people.csv").write_text("\n".join(lines) + "\n")


def people_project(
    root: Path, schedules: dict[str, dict[str, Any]], *, destinations: dict[str, Any] | None = None,
    target_extra: dict[str, Any] | None = None, rows: list[tuple[str, str, float]] | None = None,
) -> Path:
    """A project whose syncs (one per ``schedules`` entry) all read models/people.sql."""
    write_people(root, rows or [("u1", "pro", 10.0), ("u2", "free", 0.0)])
    syncs = [records_sync(name=name, model="people", schedule=schedule) for name, schedule in schedules.items()]
    dest = destinations or {"braze": {"type": "braze", "base_url": "http://127.0.0.1:9", "api_key": "k-secret-123"}}
    return write_project(root, models={"people": PEOPLE_SQL}, syncs={"people": syncs}, destinations=dest,
                         target_extra=target_extra)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def unique() -> str:
    return uuid.uuid4().hex
