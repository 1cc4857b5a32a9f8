"""``reverse_etl.sync`` with the real runner: locks, a busy state store, clean stops and alerts."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

import reverse_etl
from reverse_etl.errors import StateError
from reverse_etl.plan import SyncPlan
from reverse_etl.results import SyncRun
from reverse_etl.sandbox import Faults, SandboxServer
from reverse_etl.sandbox.braze import BrazeEmulator
from reverse_etl.scheduler import SyncLock
from reverse_etl.scheduler.state import SchedulerStore, locks_dir
from tests.conftest import braze_destination
from tests.scheduler.conftest import people_project, write_people
from tests.scheduler.test_alerts import Receiver

ROWS = [(f"u{i}", "pro", float(i)) for i in range(10)]


def state_file(root: Path) -> Path:
    return root / ".retl" / "state.duckdb"


def snapshot_count(root: Path, sync: str) -> int:
    conn = duckdb.connect(str(state_file(root)), read_only=True)
    try:
        table = conn.execute("SELECT snapshot_table FROM _retl_syncs WHERE sync = ?", [sync]).fetchone()
        return int(conn.execute(f'SELECT count(*) FROM "{table[0]}"').fetchone()[0]) if table else 0  # type: ignore[index]
    finally:
        conn.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def test_a_sync_held_by_another_process_is_skipped_or_waited_for(tmp_path: Path, braze: SandboxServer) -> None:
    people_project(tmp_path, {"people": {"every": "15m"}}, destinations=braze_destination(braze), rows=ROWS)
    other = SyncLock(locks_dir(state_file(tmp_path)), "people", heartbeat=False)
    other.acquire()
    skipped = reverse_etl.sync(tmp_path, ["people"])
    assert [(r.status, r.sent) for r in skipped.runs] == [("skipped", 0)]
    assert "already running" in (skipped.runs[0].error or "") and skipped.exit_code == 0
    threading.Timer(0.3, other.release).start()
    waited = reverse_etl.sync(tmp_path, ["people"], wait=10)
    assert [(r.status, r.sent) for r in waited.runs] == [("success", 10)]
    assert not list(locks_dir(state_file(tmp_path)).glob("*.lock"))  # released
    memory = SchedulerStore.for_state(state_file(tmp_path)).memory("people")
    assert memory.last_run_id == waited.runs[0].run_id  # manual runs count for schedules too


def hold_state(path: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process holding the DuckDB state file, as a running sync does."""
    code = f"import duckdb, time; c = duckdb.connect({str(path)!r}); print('held', flush=True); time.sleep({seconds})"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_busy_state_store_fails_fast_or_is_waited_out(tmp_path: Path, braze: SandboxServer) -> None:
    people_project(tmp_path, {"people": {"every": "15m"}}, destinations=braze_destination(braze), rows=ROWS)
    assert reverse_etl.sync(tmp_path, ["people"]).exit_code == 0
    holder = hold_state(state_file(tmp_path), 30)
    try:
        with pytest.raises(StateError, match="in use by another retl process") as caught:
            reverse_etl.sync(tmp_path, ["people"])
        assert "--wait" in str(caught.value)
        history = reverse_etl.history(tmp_path)  # `retl runs` still answers, from the scheduler memory
        assert [(r.sync, r.status, r.sent) for r in history] == [("people", "success", 10)]
        threading.Timer(0.5, holder.kill).start()
        started = time.monotonic()
        result = reverse_etl.sync(tmp_path, ["people"], wait=20)
        assert result.exit_code == 0 and time.monotonic() - started >= 0.4
    finally:
        holder.kill()
        holder.wait()


class StopAfterFirstChunk:
    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.chunks = 0

    def plan_ready(self, plan: SyncPlan) -> None:
        return None

    def progress(self, sync: str, done: int, total: int) -> None:
        self.chunks += 1
        self.stop.set()  # as SIGTERM would, in the middle of the run

    def sync_done(self, run: SyncRun) -> None:
        return None


def test_stop_ends_the_run_at_a_chunk_boundary_and_the_next_run_sends_the_rest(tmp_path: Path, braze: SandboxServer) -> None:
    emulator: BrazeEmulator = braze.emulator  # type: ignore[assignment]
    people_project(tmp_path, {"people": {"every": "15m"}}, rows=ROWS,
                   destinations=braze_destination(braze, checkpoint_rows=4, batch_size=2))
    stop = threading.Event()
    reporter = StopAfterFirstChunk(stop)
    first = reverse_etl.sync(tmp_path, ["people"], stop=stop, reporter=reporter).runs[0]
    assert first.status == "interrupted" and first.sent == 4 and reporter.chunks == 1
    assert snapshot_count(tmp_path, "people") == 4 == len(emulator.users())
    second = reverse_etl.sync(tmp_path, ["people"]).runs[0]
    assert (second.status, second.added, second.sent) == ("success", 6, 6)
    assert snapshot_count(tmp_path, "people") == 10 == len(emulator.users())
    assert SchedulerStore.for_state(state_file(tmp_path)).memory("people").failures == 0


def alert_target(receiver: Receiver, **alerts: Any) -> dict[str, Any]:
    return {"alerts": {"webhook": receiver.url, **alerts}}


def test_rejected_rows_above_the_threshold_alert(tmp_path: Path, receiver: Receiver) -> None:
    with SandboxServer(BrazeEmulator(faults=Faults(reject_rate=1.0, seed=1))) as server:
        people_project(tmp_path, {"people": {"every": "15m"}}, destinations=braze_destination(server), rows=ROWS,
                       target_extra=alert_target(receiver, rejected_threshold=3))
        result = reverse_etl.sync(tmp_path, ["people"])
    assert result.exit_code == 2
    (alert,) = receiver.bodies
    assert alert["kind"] == "rejected" and alert["rejected"] == 10 and alert["run_id"] == result.runs[0].run_id


def test_guard_trips_and_failures_alert_without_secrets(tmp_path: Path, braze: SandboxServer, receiver: Receiver) -> None:
    people_project(tmp_path, {"people": {"every": "15m"}}, destinations=braze_destination(braze), rows=ROWS,
                   target_extra=alert_target(receiver))
    yml = tmp_path / "syncs" / "people.yml"
    yml.write_text(yml.read_text().replace("mode: upsert", "mode: mirror\n  guard:\n    max_removals: 1"))
    assert reverse_etl.sync(tmp_path, ["people"]).exit_code == 0
    write_people(tmp_path, ROWS[:5])
    guarded = reverse_etl.sync(tmp_path, ["people"])
    assert guarded.runs[0].status == "guard"
    assert [b["kind"] for b in receiver.bodies] == ["guard"]

    profiles = tmp_path / "profiles.yml"
    profiles.write_text(profiles.read_text().replace("api_key: sandbox-key", "api_key: wrong-key-12345"))
    failed = reverse_etl.sync(tmp_path, ["people"], force=True)
    assert failed.runs[0].status == "error" and failed.exit_code == 1
    assert [b["kind"] for b in receiver.bodies] == ["guard", "failure"]
    assert "wrong-key-12345" not in str(receiver.bodies)


def test_a_run_that_cannot_start_alerts_too(tmp_path: Path, braze: SandboxServer, receiver: Receiver) -> None:
    people_project(tmp_path, {"people": {"every": "15m"}}, destinations=braze_destination(braze),
                   target_extra=alert_target(receiver))
    (tmp_path / "data" / "people.csv").unlink()  # the model cannot run
    with pytest.raises(reverse_etl.RetlError):
        reverse_etl.sync(tmp_path, ["people"])
    assert [(b["kind"], b["sync"]) for b in receiver.bodies] == [("failure", "people")]
    memory = SchedulerStore.for_state(state_file(tmp_path)).memory("people")
    assert memory.last_status == "error" and memory.failures == 1
