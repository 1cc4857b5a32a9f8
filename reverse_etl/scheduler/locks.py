"""Per-sync locks, so two processes never run the same sync at once.

A lock is a small JSON file ``<state dir>/locks/<state stem>/<sync>.lock`` naming its holder
(pid, host, process start time, command), when it was taken and a lease. The holder renews the
lease from a heartbeat thread; a lock is *stale*, and may be broken by the next process, when
its holder is gone (same host and the pid is dead, or the pid now belongs to another process)
or its lease expired (the holder hung, or sits on another host that shares the directory).

Why files and not the state store: the state store is one DuckDB file that DuckDB locks for
the whole run, so a second process cannot even open it to ask who runs what. Lock files can
be read by anyone at any time (``retl runs`` shows them while the state store is busy).

Taking, renewing, breaking and releasing happen under a short ``flock`` of ``.guard`` in the
locks folder, so a process breaking a stale lock can never delete one just renewed or just
taken by a third process. The lock file itself is always replaced whole, so readers without
the guard never see half of it. If the heartbeat finds its lock taken over (its lease expired
while the process was frozen), :attr:`SyncLock.lost` is set and the run stops after its
current chunk.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

import orjson

from reverse_etl.errors import AlreadyRunningError
from reverse_etl.scheduler.state import file_lock, write_atomic

log = logging.getLogger("reverse_etl.scheduler")
DEFAULT_LEASE_S = 60.0


@dataclass(frozen=True)
class LockInfo:
    """Who holds a lock, as written in its file."""

    sync: str
    token: str
    pid: int
    host: str
    started_at: float  # epoch seconds
    renewed_at: float
    lease_s: float
    proc_start: str | None = None  # the holder's start time (Linux), to notice a reused pid
    command: str = ""

    def describe(self) -> str:
        since = datetime.fromtimestamp(self.started_at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        return f"pid {self.pid} on {self.host} since {since}"

    def expired(self, now: float) -> bool:
        return now > self.renewed_at + self.lease_s


class LockHeld(AlreadyRunningError):
    """The sync's lock is held by a live process."""

    def __init__(self, holder: LockInfo, path: Path) -> None:
        self.holder = holder
        self.path = path
        super().__init__(
            f"sync {holder.sync!r} is already running ({holder.describe()})",
            hint=f"wait for it (--wait), or if that process is gone for sure, delete {path}",
        )


def _proc_start(pid: int) -> str | None:
    """The start time of ``pid`` in clock ticks since boot (Linux), None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22; the command name (field 2) may hold spaces and parentheses, so split after it.
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def pid_alive(pid: int, proc_start: str | None = None) -> bool:
    """Whether ``pid`` runs on this host (and is the same process, when its start is known)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by someone else
    if proc_start is not None:
        now_start = _proc_start(pid)
        if now_start is not None and now_start != proc_start:
            return False
    return True


def is_stale(info: LockInfo, now: float, host: str | None = None) -> bool:
    """Whether ``info``'s holder is gone: its pid is dead here, or its lease expired."""
    if info.expired(now):
        return True
    if info.host == (host or socket.gethostname()):
        return not pid_alive(info.pid, info.proc_start)
    return False


def read_lock(path: Path) -> LockInfo | None:
    """The lock at ``path``, or None if there is none (or it is unreadable, which is stale)."""
    try:
        data = orjson.loads(path.read_bytes())
        return LockInfo(**data)
    except FileNotFoundError:
        return None
    except (OSError, orjson.JSONDecodeError, TypeError):
        return LockInfo(sync=path.stem, token="", pid=0, host="", started_at=0.0, renewed_at=0.0, lease_s=0.0)


def held_locks(directory: Path, now: float | None = None) -> list[LockInfo]:
    """Live locks in ``directory`` (what is running right now)."""
    now = time.time() if now is None else now
    out = []
    for path in sorted(directory.glob("*.lock")) if directory.is_dir() else []:
        info = read_lock(path)
        if info is not None and info.token and not is_stale(info, now):
            out.append(info)
    return out


class SyncLock:
    """The lock of one sync. Use as a context manager, or ``acquire()`` / ``release()``."""

    def __init__(
        self, directory: Path, sync: str, *, lease_s: float = DEFAULT_LEASE_S,
        clock: Callable[[], float] = time.time, heartbeat: bool = True,
    ) -> None:
        self.directory = directory
        self.sync = sync
        self.path = directory / f"{sync}.lock"
        self.lease_s = lease_s
        self.clock = clock
        self.heartbeat = heartbeat
        self.token = uuid.uuid4().hex
        self.held = False
        self.lost = threading.Event()
        self._guard = directory / ".guard"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _info(self, started_at: float) -> LockInfo:
        now = self.clock()
        return LockInfo(
            sync=self.sync, token=self.token, pid=os.getpid(), host=socket.gethostname(),
            started_at=started_at, renewed_at=now, lease_s=self.lease_s, proc_start=_proc_start(os.getpid()),
            command=" ".join(sys.argv[:6])[:200],
        )

    def _write(self, info: LockInfo) -> None:
        write_atomic(self.path, orjson.dumps(asdict(info)))

    def try_acquire(self) -> LockInfo | None:
        """Take the lock if free or stale; return the live holder otherwise."""
        with file_lock(self._guard):
            current = read_lock(self.path)
            if current is not None and current.token != self.token:
                if not is_stale(current, self.clock()):
                    return current
                log.warning("breaking the stale lock of sync %r (%s)", self.sync, current.describe())
            self._write(self._info(self.clock()))
        self.held = True
        self.lost.clear()
        if self.heartbeat:
            self._start_heartbeat()
        return None

    def acquire(self, *, wait: float = 0.0, stop: threading.Event | None = None) -> None:
        """Take the lock, waiting up to ``wait`` seconds (``math.inf``: until free or ``stop``).

        Raises :class:`LockHeld` naming the holder if it stays taken.
        """
        deadline = time.monotonic() + wait
        delay = 0.2
        while True:
            holder = self.try_acquire()
            if holder is None:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (stop is not None and stop.is_set()):
                raise LockHeld(holder, self.path)
            pause = min(delay, remaining, max(0.05, holder.renewed_at + holder.lease_s - self.clock()))
            if stop is not None:
                if stop.wait(pause):
                    raise LockHeld(holder, self.path)
            else:
                time.sleep(pause)
            delay = min(delay * 2, 5.0)

    def renew(self) -> bool:
        """Extend the lease; False (and :attr:`lost` set) if another process took the lock."""
        with file_lock(self._guard):
            current = read_lock(self.path)
            if current is None or current.token != self.token:
                self.lost.set()
                return False
            self._write(LockInfo(**{**asdict(current), "renewed_at": self.clock()}))
        return True

    def release(self) -> None:
        """Give the lock up (only if still ours)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._thread = None
        if not self.held:
            return
        self.held = False
        with file_lock(self._guard):
            current = read_lock(self.path)
            if current is not None and current.token == self.token:
                self.path.unlink(missing_ok=True)

    def _start_heartbeat(self) -> None:
        self._stop = threading.Event()
        interval = max(0.05, self.lease_s / 3)

        def beat() -> None:
            while not self._stop.wait(interval):
                try:
                    if not self.renew():
                        log.error("sync %r lost its lock to another process; stopping after the current chunk", self.sync)
                        return
                except OSError as exc:  # a full disk must not kill the run; the lease may lapse
                    log.warning("could not renew the lock of sync %r: %s", self.sync, exc)

        self._thread = threading.Thread(target=beat, name=f"retl-lock-{self.sync}", daemon=True)
        self._thread.start()

    def __enter__(self) -> SyncLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
