"""Two real ``retl sync`` processes on the same sync at the same moment: one runs, one says so.

The in-process lock tests (tests/scheduler/test_locks.py, test_guarded_sync.py) cover skip,
``--wait`` and stale-lock recovery against a lock held by the test itself; the recovery of a
lock left by a SIGKILLed ``retl sync`` is in test_crash.py. What only real processes show is
the race: both start together, both load the project and reach for the lock. The sync sends
Braze events, which have no idempotency key, so a second run of the same rows would show up as
duplicate events.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import orjson
import pytest

from reverse_etl.sandbox import Faults, SandboxServer
from reverse_etl.sandbox.braze import BrazeEmulator
from tests.reliability.harness import SEED, World, start_retl, write_project

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(120)]

EVENTS = 400


def events_project(root: Path, url: str) -> World:
    world = World.initial(EVENTS, random.Random(SEED))
    world.write(root)
    dest = {"type": "braze", "base_url": url, "api_key": "sandbox-key", "batch_size": 10, "concurrency": 1}
    write_project(root, destinations={"braze": dest}, syncs=[
        {"name": "orders", "model": "events", "destination": "braze", "type": "events", "primary_key": "event_id",
         "identifiers": {"external_id": "user_id"}, "event": {"name": "order", "time": "ts"},
         "fields": {"event_id": "event_id"}},
    ])
    return world


def copies(emulator: BrazeEmulator) -> Counter[str]:
    return Counter(e["properties"]["event_id"] for u in emulator.users().values() for e in u["events"])


def test_two_processes_at_once_one_runs_the_other_reports_it_running(tmp_path: Path) -> None:
    # 40 requests of 25 ms each: the winner holds the lock for a second or more, far longer than
    # the two processes' start-up times differ
    emulator = BrazeEmulator(faults=Faults(latency_ms=25))
    with SandboxServer(emulator) as server:
        world = events_project(tmp_path, server.url)
        procs = [start_retl(tmp_path, "sync", "orders", "--format", "json") for _ in range(2)]
        outputs = [p.communicate(timeout=60) for p in procs]
    results = []
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err.decode()
        (run,) = orjson.loads(out)["runs"]
        results.append(run)
    by_status = {r["status"]: r for r in results}
    assert sorted(by_status) == ["skipped", "success"], results
    assert by_status["success"]["sent"] == EVENTS
    skipped = by_status["skipped"]
    assert skipped["sent"] == 0 and "already running" in skipped["error"]
    winner = procs[[r["status"] for r in results].index("success")]
    assert f"pid {winner.pid}" in skipped["error"]  # it names who runs it
    held = copies(emulator)
    assert set(held) == set(world.events) and max(held.values()) == 1, "each event sent exactly once"
    assert not list((tmp_path / ".retl" / "locks").rglob("*.lock"))


def test_a_waiting_process_runs_after_the_other_and_sends_nothing_twice(tmp_path: Path) -> None:
    emulator = BrazeEmulator(faults=Faults(latency_ms=15))
    with SandboxServer(emulator) as server:
        world = events_project(tmp_path, server.url)
        procs = [start_retl(tmp_path, "sync", "orders", "--wait", "--format", "json") for _ in range(2)]
        outputs = [p.communicate(timeout=90) for p in procs]
    runs = []
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err.decode()
        runs.extend(orjson.loads(out)["runs"])
    assert sorted(r["sent"] for r in runs) == [0, EVENTS] and {r["status"] for r in runs} == {"success"}
    held = copies(emulator)
    assert set(held) == set(world.events) and max(held.values()) == 1
