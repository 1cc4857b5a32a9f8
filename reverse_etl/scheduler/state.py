"""The scheduler's memory: a small JSON file next to the state store, written atomically.

Why not the state store? DuckDB locks ``state.duckdb`` for the whole length of a sync run, so
a second process (another ``retl schedule --once``, ``retl runs``) could not even read when a
sync last ran while any sync is running. This file is only ever replaced whole (write a temp
file, then ``os.replace``), so readers never see half of it and need no lock; writers do a short
read-modify-write under an ``flock`` of ``<file>.lock``. Losing it is harmless: a cron sync
waits for its next tick, an ``every`` or ``when_changed`` sync runs once.

Layout (``.retl/state.scheduler.json`` for the default state path)::

    {"version": 1,
     "syncs": {"<sync>": {SyncMemory fields}},
     "cache": {"<input key>": [stat..., hash]}}      # fingerprint parts, see fingerprint.py
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson

from reverse_etl.scheduler.triggers import SyncMemory

try:  # POSIX; elsewhere writers are serialised only by the per-sync locks
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("reverse_etl.scheduler")
VERSION = 1


def scheduler_path(state_path: Path) -> Path:
    """Where the scheduler memory of the state store at ``state_path`` lives."""
    return state_path.with_name(f"{state_path.stem}.scheduler.json")


def locks_dir(state_path: Path) -> Path:
    """Where the per-sync locks of the state store at ``state_path`` live."""
    return state_path.parent / "locks" / state_path.stem


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` of ``path`` for a short critical section (released if we die)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the flock


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so readers see the old or the new file, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class SchedulerStore:
    """Reads and updates the scheduler memory file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = path.with_name(path.name + ".lock")

    @classmethod
    def for_state(cls, state_path: Path) -> SchedulerStore:
        return cls(scheduler_path(state_path))

    def _read(self) -> dict[str, Any]:
        try:
            data = orjson.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {"version": VERSION, "syncs": {}, "cache": {}}
        except (OSError, orjson.JSONDecodeError) as exc:
            # Only reachable if something other than retl wrote it; starting afresh is safe.
            log.warning("ignoring unreadable scheduler state %s (%s)", self.path, exc)
            return {"version": VERSION, "syncs": {}, "cache": {}}
        if not isinstance(data, dict) or not isinstance(data.get("syncs"), dict):
            return {"version": VERSION, "syncs": {}, "cache": {}}
        data.setdefault("cache", {})
        return data

    def load(self) -> dict[str, SyncMemory]:
        """Every sync's memory."""
        return {name: SyncMemory.from_json(m) for name, m in self._read()["syncs"].items() if isinstance(m, dict)}

    def memory(self, sync: str) -> SyncMemory:
        return self.load().get(sync) or SyncMemory()

    def cache(self) -> dict[str, Any]:
        cache = self._read()["cache"]
        return cache if isinstance(cache, dict) else {}

    def update(
        self,
        changes: Mapping[str, Callable[[SyncMemory], SyncMemory]] | None = None,
        cache: Mapping[str, Any] | None = None,
    ) -> dict[str, SyncMemory]:
        """Apply ``changes`` (sync -> old memory -> new memory) and merge ``cache``, atomically."""
        with file_lock(self._lock):
            data = self._read()
            for name, change in (changes or {}).items():
                old = data["syncs"].get(name)
                data["syncs"][name] = change(SyncMemory.from_json(old) if isinstance(old, dict) else SyncMemory()).as_json()
            if cache:
                data["cache"].update(cache)
            data["version"] = VERSION
            write_atomic(self.path, orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
            return {n: SyncMemory.from_json(m) for n, m in data["syncs"].items()}
