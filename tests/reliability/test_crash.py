"""Crashes: ``retl sync`` killed (SIGKILL) or stopped (SIGTERM) at random points, several times in a row.

After every kill the state store must open and hold only what the destination holds; the lock
the dead process left behind must not stop the next run; the run after the last kill must
finish, and the end state must equal the model. The project syncs traits (a records mirror:
resending is harmless, but a stale or missing value is not) and orders (Braze events, which have
no idempotency key: every copy of an event counts).

A SIGKILL leaves the chunk in flight unacknowledged, so its events are sent again: the test
tracks each such copy and asserts the final number of duplicates is exactly that - no more, no
fewer. A SIGTERM lets the chunk finish and be acknowledged: no duplicates at all.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from reverse_etl.sandbox import Faults, SandboxServer
from reverse_etl.sandbox.braze import BrazeEmulator
from tests.reliability.harness import (
    ROWS,
    SEED,
    World,
    read_state,
    snapshot_rows,
    start_retl,
    wait_for,
    write_project,
)

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]

USERS = max(300, ROWS // 2)
BATCH = 20
CHUNK = 100  # rows acknowledged per snapshot commit: 5 requests
TRAITS = ("plan", "ltv", "country", "name")
TRACK = "/users/track"


def crash_project(root: Path, url: str) -> None:
    dest = {"type": "braze", "base_url": url, "api_key": "sandbox-key", "batch_size": BATCH, "concurrency": 1,
            "checkpoint_rows": CHUNK, "max_retries": 2}
    write_project(root, destinations={"braze": dest}, syncs=[
        {"name": "traits", "model": "traits", "destination": "braze", "type": "records", "mode": "mirror",
         "primary_key": "user_id", "identifiers": {"external_id": "user_id"}, "fields": {f: f for f in TRAITS}},
        {"name": "orders", "model": "events", "destination": "braze", "type": "events", "primary_key": "event_id",
         "identifiers": {"external_id": "user_id"}, "event": {"name": "order", "time": "ts"},
         "fields": {"event_id": "event_id"}},
    ])


def lock_file(root: Path, sync: str) -> Path:
    return root / ".retl" / "locks" / "state" / f"{sync}.lock"


def lock_holder(root: Path, sync: str) -> int | None:
    """The pid written in a sync's lock file (None if there is none, or it is being replaced)."""
    try:
        return int(orjson.loads(lock_file(root, sync).read_bytes())["pid"])
    except (OSError, ValueError, KeyError):
        return None


def quiesce(emulator: BrazeEmulator) -> None:
    """Wait until requests the dead process left in flight have been answered (or applied)."""
    last = -1
    while len(emulator.request_log) != last:
        last = len(emulator.request_log)
        time.sleep(0.15)


def event_copies(emulator: BrazeEmulator) -> Counter[str]:
    return Counter(e["properties"]["event_id"] for u in emulator.users().values() for e in u["events"])


def braze_traits(emulator: BrazeEmulator) -> dict[str, dict[str, Any]]:
    return {uid: {f: p[f] for f in TRAITS if f in p} for uid, p in emulator.users().items()}


def assert_snapshot_is_held(root: Path, emulator: BrazeEmulator, world: World) -> None:
    """Nothing in a snapshot that the destination does not hold. A traits row may have been sent
    again with the model's newer value, or cleared after it left the model, and that not yet
    acknowledged: Braze then holds the newer value (none, when cleared)."""
    held = braze_traits(emulator)
    for uid, values in snapshot_rows(root, "traits").items():
        acked = {f: values[f] for f in TRAITS}
        assert held.get(uid) in (acked, world.users.get(uid, {})), f"{uid}: snapshot {acked}, Braze {held.get(uid)}"
    copies = event_copies(emulator)
    acked_events = set(snapshot_rows(root, "orders"))
    assert acked_events <= set(copies), f"acknowledged but never delivered: {sorted(acked_events - set(copies))[:5]}"


def assert_exact(emulator: BrazeEmulator, world: World) -> None:
    """Every model user holds exactly its traits; every other profile (users who left, users
    known only from events) holds none; every event is there."""
    held = braze_traits(emulator)
    for uid in set(held) | set(world.users):
        assert held.get(uid, {}) == world.users.get(uid, {}), f"{uid}: Braze {held.get(uid)}, model {world.users.get(uid)}"
    assert set(event_copies(emulator)) == set(world.events)


def kill_at(phase: str, proc: subprocess.Popen[bytes], emulator: BrazeEmulator, root: Path, rng: random.Random,
            sig: int) -> bool:
    """Send ``sig`` to ``proc`` at a random point of ``phase``; False if the run ended first.

    ``build``: the run holds its locks and builds and diffs the models. ``mid-batch``: after a
    random request of the traits sync (which runs first). ``snapshot``: right after the last
    answer of a traits chunk, while the runner writes its acknowledgement. ``events`` and
    ``events-snapshot``: the same within the orders sync, counted in events Braze stored.
    """
    def requests() -> int:
        return emulator.requests_to(TRACK)

    def events() -> int:
        return int(emulator.summary()["events"])

    base, stored = requests(), events()
    try:
        if phase == "build":
            wait_for(lambda: lock_holder(root, "orders") == proc.pid, timeout=30, what="the run to take its locks", proc=proc)
            time.sleep(rng.uniform(0, 0.08))
        elif phase == "mid-batch":
            k = rng.randint(1, 12)
            wait_for(lambda: requests() >= base + k, timeout=30, what=f"request {k}", proc=proc)
            time.sleep(rng.uniform(0, 0.012))
        elif phase == "snapshot":
            n = rng.randint(1, 2) * CHUNK // BATCH
            wait_for(lambda: requests() >= base + n, timeout=30, what=f"chunk end {n}", proc=proc)
            time.sleep(rng.uniform(0, 0.006))
        elif phase == "events":
            k = rng.randint(1, 8) * BATCH
            wait_for(lambda: events() >= stored + k, timeout=30, what=f"event {k}", proc=proc)
            time.sleep(rng.uniform(0, 0.012))
        else:  # "events-snapshot"
            n = rng.randint(1, 2) * CHUNK
            wait_for(lambda: events() >= stored + n, timeout=30, what=f"event chunk end {n}", proc=proc)
            time.sleep(rng.uniform(0, 0.006))
    except AssertionError:
        if proc.poll() is not None:
            return False
        raise
    if proc.poll() is not None:
        return False
    proc.send_signal(sig)
    return True


def test_sigkill_at_random_points_never_loses_or_corrupts(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    world = World.initial(USERS, rng)
    emulator = BrazeEmulator(faults=Faults(latency_ms=8))
    pending: dict[str, int] = {}  # event -> copies delivered but unacknowledged at the last kill that saw it so
    kills = 0
    with SandboxServer(emulator) as server:
        crash_project(tmp_path, server.url)
        world.write(tmp_path)
        for i, phase in enumerate(["mid-batch", "build", "events", "snapshot", "events-snapshot", "mid-batch", "build",
                                   "events"]):
            if i == 3:  # the data moves between crashes: changes, removals (in flight ones too), new rows
                world.mutate(rng)
                world.write(tmp_path)
            proc = start_retl(tmp_path, "sync", "--format", "json")
            killed = kill_at(phase, proc, emulator, tmp_path, rng, signal.SIGKILL)
            proc.wait(timeout=60)
            if not killed:
                assert proc.returncode == 0, proc.stderr.read().decode() if proc.stderr else ""
                continue
            kills += 1
            assert proc.returncode == -signal.SIGKILL
            quiesce(emulator)
            # the dead process's lock is still there; the next run must take it over
            assert lock_holder(tmp_path, "orders") == proc.pid
            read_state(tmp_path)  # the state store opens after every crash
            assert_snapshot_is_held(tmp_path, emulator, world)
            acked = set(snapshot_rows(tmp_path, "orders"))
            for event, n in event_copies(emulator).items():
                if event not in acked:
                    pending[event] = n
        assert kills >= 4, f"only {kills} kills landed; the test proves too little"
        final = start_retl(tmp_path, "sync", "--format", "json")
        out, err = final.communicate(timeout=120)
        assert final.returncode == 0, err.decode()
        assert all(r["status"] == "success" for r in orjson.loads(out)["runs"])
        again = start_retl(tmp_path, "sync", "--format", "json")
        out, err = again.communicate(timeout=60)
        assert [r["sent"] for r in orjson.loads(out)["runs"]] == [0, 0], "the run after the crashes left work undone"
        assert_exact(emulator, world)
        copies = event_copies(emulator)
        # Braze events are at least once: exactly the copies in flight at a kill are extra
        assert {e: n - 1 for e, n in copies.items() if n > 1} == {e: n for e, n in pending.items() if n}
    state = read_state(tmp_path)
    assert {status for _, status in state["runs"]} <= {"success", "aborted"}
    assert state["snapshots"]["traits"] == set(world.users) and state["snapshots"]["orders"] == set(world.events)
    assert not list((tmp_path / ".retl" / "locks").rglob("*.lock"))
    print(f"\nsigkill: {kills} kills, {sum(pending.values())} Braze event resends")


def test_sigterm_stops_after_the_chunk_and_duplicates_nothing(tmp_path: Path) -> None:
    rng = random.Random(SEED + 7)
    world = World.initial(USERS, rng)
    emulator = BrazeEmulator(faults=Faults(latency_ms=8))
    stops = 0
    with SandboxServer(emulator) as server:
        crash_project(tmp_path, server.url)
        world.write(tmp_path)
        for i, phase in enumerate(["mid-batch", "build", "events", "snapshot", "events-snapshot"]):
            if i == 2:
                world.mutate(rng)
                world.write(tmp_path)
            acked_before = len(snapshot_rows(tmp_path, "orders")) if i else 0
            proc = start_retl(tmp_path, "sync", "--format", "json")
            stopped = kill_at(phase, proc, emulator, tmp_path, rng, signal.SIGTERM)
            out, err = proc.communicate(timeout=60)
            if not stopped:
                assert proc.returncode == 0, err.decode()
                continue
            stops += 1
            runs = orjson.loads(out)["runs"]
            if any(r["status"] == "interrupted" for r in runs):
                assert proc.returncode == 1, err.decode()
                assert "stopping after the current chunk" in err.decode()
            assert {r["status"] for r in runs} <= {"success", "interrupted"}, runs
            # a graceful stop acknowledges what it delivered: snapshot and Braze agree exactly
            assert not list((tmp_path / ".retl" / "locks").rglob("*.lock")), "locks released"
            held = braze_traits(emulator)
            for uid, values in snapshot_rows(tmp_path, "traits").items():
                assert held[uid] == {f: values[f] for f in TRAITS}
            assert set(snapshot_rows(tmp_path, "orders")) == set(event_copies(emulator))
            sent = {r["sync"]: r["sent"] for r in runs}
            assert sent["orders"] == len(snapshot_rows(tmp_path, "orders")) - acked_before  # what it says it sent
        assert stops >= 3
        final = start_retl(tmp_path, "sync", "--format", "json")
        out, err = final.communicate(timeout=120)
        assert final.returncode == 0, err.decode()
        assert_exact(emulator, world)
        copies = event_copies(emulator)
        assert max(copies.values()) == 1, "a graceful stop must not send an event twice"
    statuses = [status for _, status in read_state(tmp_path)["runs"]]
    assert "interrupted" in statuses and "aborted" not in statuses and statuses[-1] == "success"
