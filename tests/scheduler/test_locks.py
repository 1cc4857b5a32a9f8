"""Per-sync locks: exclusive, renewed, recovered when their holder is gone, never stolen when alive."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, replace
from pathlib import Path

import orjson
import pytest

from reverse_etl.errors import AlreadyRunningError
from reverse_etl.scheduler.locks import (
    LockHeld,
    LockInfo,
    SyncLock,
    held_locks,
    is_stale,
    pid_alive,
    read_lock,
)


class WallClock:
    """An epoch-seconds clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t


def write_foreign_lock(path: Path, **changes: object) -> LockInfo:
    info = LockInfo(sync=path.stem, token="other", pid=os.getpid(), host=socket.gethostname(),
                    started_at=time.time(), renewed_at=time.time(), lease_s=60.0)
    info = replace(info, **changes)  # type: ignore[arg-type]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(asdict(info)))
    return info


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_second_holder_is_refused_and_told_who_runs_it(tmp_path: Path) -> None:
    first = SyncLock(tmp_path, "traits", heartbeat=False)
    first.acquire()
    second = SyncLock(tmp_path, "traits", heartbeat=False)
    with pytest.raises(LockHeld) as caught:
        second.acquire()
    assert isinstance(caught.value, AlreadyRunningError)
    assert f"pid {os.getpid()}" in str(caught.value) and "already running" in str(caught.value)
    assert SyncLock(tmp_path, "events", heartbeat=False).try_acquire() is None  # other syncs are independent
    first.release()
    second.acquire()
    assert read_lock(second.path).token == second.token  # type: ignore[union-attr]
    second.release()
    assert not second.path.exists()


def test_a_lock_of_a_dead_process_is_recovered(tmp_path: Path) -> None:
    path = tmp_path / "traits.lock"
    write_foreign_lock(path, pid=dead_pid())
    lock = SyncLock(tmp_path, "traits", heartbeat=False)
    lock.acquire()
    assert read_lock(path).pid == os.getpid()  # type: ignore[union-attr]
    lock.release()


def test_a_reused_pid_does_not_keep_a_lock_alive(tmp_path: Path) -> None:
    # Our own pid is alive, but with another start time it is another process.
    path = tmp_path / "traits.lock"
    write_foreign_lock(path, proc_start="1")
    if not Path("/proc/self/stat").exists():
        pytest.skip("process start times are read from /proc")
    assert not pid_alive(os.getpid(), "1")
    SyncLock(tmp_path, "traits", heartbeat=False).acquire()


def test_a_live_holder_with_an_expired_lease_is_stale_but_a_fresh_one_is_not(tmp_path: Path) -> None:
    clock = WallClock()
    path = tmp_path / "traits.lock"
    info = write_foreign_lock(path, renewed_at=clock.t, lease_s=30.0)  # our own pid: alive
    lock = SyncLock(tmp_path, "traits", heartbeat=False, clock=clock)
    with pytest.raises(LockHeld):
        lock.acquire()
    clock.t += 31
    assert is_stale(info, clock.t)
    lock.acquire()
    lock.release()


def test_a_lock_from_another_host_is_kept_until_its_lease_expires(tmp_path: Path) -> None:
    info = write_foreign_lock(tmp_path / "traits.lock", host="elsewhere", pid=dead_pid())
    assert not is_stale(info, time.time())  # we cannot see its pid: only the lease tells
    assert is_stale(info, time.time() + 61)


def test_renewal_keeps_the_lease_and_notices_a_takeover(tmp_path: Path) -> None:
    clock = WallClock()
    lock = SyncLock(tmp_path, "traits", heartbeat=False, clock=clock, lease_s=10)
    lock.acquire()
    clock.t += 8
    assert lock.renew()
    assert read_lock(lock.path).renewed_at == clock.t  # type: ignore[union-attr]
    clock.t += 8
    assert not is_stale(read_lock(lock.path), clock.t)  # type: ignore[arg-type]
    write_foreign_lock(lock.path)  # as if our lease lapsed and another process took over
    assert not lock.renew()
    assert lock.lost.is_set()
    lock.release()
    assert read_lock(lock.path).token == "other"  # type: ignore[union-attr]  # not ours: left alone


def test_heartbeat_renews_in_the_background(tmp_path: Path) -> None:
    lock = SyncLock(tmp_path, "traits", lease_s=0.3)
    lock.acquire()
    try:
        first = read_lock(lock.path).renewed_at  # type: ignore[union-attr]
        time.sleep(0.5)
        assert read_lock(lock.path).renewed_at > first  # type: ignore[union-attr]
        assert SyncLock(tmp_path, "traits", heartbeat=False).try_acquire() is not None  # still held
    finally:
        lock.release()
    assert not lock.path.exists()


def test_wait_acquires_once_the_holder_releases(tmp_path: Path) -> None:
    holder = SyncLock(tmp_path, "traits", heartbeat=False)
    holder.acquire()
    threading.Timer(0.3, holder.release).start()
    waiter = SyncLock(tmp_path, "traits", heartbeat=False)
    started = time.monotonic()
    waiter.acquire(wait=10)
    assert 0.2 < time.monotonic() - started < 5
    waiter.release()


def test_wait_gives_up_after_its_time_or_on_stop(tmp_path: Path) -> None:
    SyncLock(tmp_path, "traits", heartbeat=False).acquire()
    with pytest.raises(LockHeld):
        SyncLock(tmp_path, "traits", heartbeat=False).acquire(wait=0.3)
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    with pytest.raises(LockHeld):
        SyncLock(tmp_path, "traits", heartbeat=False).acquire(wait=60, stop=stop)
    assert time.monotonic() - started < 3


def test_a_garbled_lock_file_counts_as_stale(tmp_path: Path) -> None:
    (tmp_path / "traits.lock").write_text("{not json")
    lock = SyncLock(tmp_path, "traits", heartbeat=False)
    lock.acquire()
    lock.release()


def test_held_locks_lists_live_holders_only(tmp_path: Path) -> None:
    live = SyncLock(tmp_path, "a", heartbeat=False)
    live.acquire()
    write_foreign_lock(tmp_path / "b.lock", pid=dead_pid())
    assert [i.sync for i in held_locks(tmp_path)] == ["a"]
    assert held_locks(tmp_path / "missing") == []
