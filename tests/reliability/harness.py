"""What the reliability tests share: a world of users and events, faults, convergence, checks.

A :class:`World` is the truth: users with traits, an audience, events. It is written to Parquet
files that the project's models read, so the test knows exactly what the warehouse says and can
compare it with what an emulator holds after the syncs. Sizes come from ``RETL_CHAOS_ROWS``
(default: small enough for CI; ``RETL_CHAOS_ROWS=20000`` for the full-size proof) and the fault
draws from ``RETL_CHAOS_SEED``.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar

import duckdb
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

import reverse_etl
from reverse_etl.diff import engine
from reverse_etl.results import SyncResult
from reverse_etl.sandbox import Faults

# Snapshot rows recorded before their delivery is known (None where the engine has none).
MAYBE_HASH: int | None = getattr(engine, "MAYBE_HASH", None)

ROWS = int(os.environ.get("RETL_CHAOS_ROWS", "800"))
SEED = int(os.environ.get("RETL_CHAOS_SEED", "20240501"))
FULL_SIZE = ROWS >= 20_000

# Text that has broken sync tools before: accents, CJK, emoji, quotes, commas, a newline.
NAMES = ["Zoë", "Łukasz", "山田 太郎", "Ana María", "O'Brien", "d\"quote", "a,b;c", "🎉 party", "line\nbreak", "Ñandú"]
PLANS = ["free", "pro", "team", "enterprise"]
COUNTRIES = ["US", "DE", "FR", "JP", "BR", "GB"]


def chaos_faults(seed: int = SEED) -> Faults:
    """The issue's fault mix: 20% of requests 5xx or 429, dropped connections (before and after
    the request is applied), slow answers, and 2% of objects rejected (a fresh draw per attempt,
    so a rejected row is usually accepted when sent again)."""
    return Faults(
        fail_rate=0.15, throttle_rate=0.05, drop_rate=0.03, lost_reply_rate=0.05, reject_rate=0.02,
        slow_rate=0.05, slow_ms=150, latency_ms=1, seed=seed,
    )


def batch_size(cap: int) -> int:
    """Enough requests per run for the faults to bite at the reduced size, full batches at scale."""
    return max(10, min(cap, ROWS // 25))


@dataclass
class World:
    """What the warehouse says: users (with traits), audience members and events."""

    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    members: set[str] = field(default_factory=set)
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    next_user: int = 0
    next_event: int = 0

    @classmethod
    def initial(cls, n: int, rng: random.Random) -> World:
        world = cls()
        for _ in range(n):
            world.add_user(rng)
        world.members = {u for u in world.users if rng.random() < 0.5}
        for _ in range(n):
            world.add_event(rng)
        return world

    def add_user(self, rng: random.Random) -> str:
        uid = f"u{self.next_user:06d}"
        self.next_user += 1
        self.users[uid] = {
            "plan": rng.choice(PLANS), "ltv": round(rng.uniform(0, 5000), 2), "country": rng.choice(COUNTRIES),
            "name": f"{rng.choice(NAMES)} {uid}",
        }
        return uid

    def add_event(self, rng: random.Random) -> str:
        eid = f"e{self.next_event:07d}"
        self.next_event += 1
        when = datetime(2026, 1, 1) + timedelta(seconds=rng.randrange(0, 90 * 86400))
        self.events[eid] = {"user_id": rng.choice(sorted(self.users)) if self.users else "u000000", "ts": when,
                            "amount": rng.randrange(100, 100_000)}
        return eid

    def mutate(self, rng: random.Random) -> None:
        """A day of data: 10% of users change a trait, 5% leave, 5% arrive; the audience churns;
        5% more events. Events never change (an event is sent once, as it was)."""
        ids = sorted(self.users)
        for uid in rng.sample(ids, len(ids) // 10):
            user = self.users[uid]
            which = rng.choice(["plan", "ltv", "country", "name"])
            if which == "plan":
                user["plan"] = rng.choice([p for p in PLANS if p != user["plan"]])
            elif which == "ltv":
                user["ltv"] = round(user["ltv"] + rng.uniform(1, 100), 2)
            elif which == "country":
                user["country"] = rng.choice([c for c in COUNTRIES if c != user["country"]])
            else:
                user["name"] = f"{rng.choice(NAMES)} {uid} v2"
        for uid in rng.sample(ids, len(ids) // 20):
            del self.users[uid]
            self.members.discard(uid)
        for _ in range(len(ids) // 20):
            self.add_user(rng)
        current = sorted(self.users)
        leaving = rng.sample(sorted(self.members), len(self.members) // 10)
        self.members -= set(leaving)
        self.members |= set(rng.sample(current, len(current) // 10))
        for _ in range(max(1, len(self.events) // 20)):
            self.add_event(rng)

    def write(self, root: Path) -> None:
        """The world as Parquet files under ``root/data``, what the models read."""
        data = root / "data"
        data.mkdir(parents=True, exist_ok=True)
        ids = sorted(self.users)
        users = pa.table({
            "user_id": ids,
            "plan": [self.users[u]["plan"] for u in ids],
            "ltv": pa.array([self.users[u]["ltv"] for u in ids], pa.float64()),
            "country": [self.users[u]["country"] for u in ids],
            "name": [self.users[u]["name"] for u in ids],
        })
        pq.write_table(users, data / "users.parquet")
        pq.write_table(pa.table({"user_id": pa.array(sorted(self.members), pa.string())}), data / "members.parquet")
        eids = sorted(self.events)
        events = pa.table({
            "event_id": eids,
            "user_id": [self.events[e]["user_id"] for e in eids],
            "ts": pa.array([self.events[e]["ts"] for e in eids], pa.timestamp("us")),
            "amount": pa.array([self.events[e]["amount"] for e in eids], pa.int64()),
        })
        pq.write_table(events, data / "events.parquet")


MODELS = {
    "traits": "SELECT user_id, plan, ltv, country, name FROM read_parquet('data/users.parquet')",
    "members": "SELECT user_id FROM read_parquet('data/members.parquet')",
    "events": "SELECT event_id, user_id, ts, amount FROM read_parquet('data/events.parquet')",
}


def write_project(root: Path, syncs: list[dict[str, Any]], destinations: dict[str, Any], **target: Any) -> Path:
    """A project reading the world's Parquet files: the three models, ``syncs/all.yml``, a profile."""
    (root / "models").mkdir(parents=True, exist_ok=True)
    (root / "syncs").mkdir(exist_ok=True)
    for name, sql in MODELS.items():
        (root / "models" / f"{name}.sql").write_text(sql + "\n")
    (root / "syncs" / "all.yml").write_text(yaml.safe_dump({"syncs": syncs}, sort_keys=False, allow_unicode=True))
    dev = {"warehouse": {"type": "duckdb", "path": ".retl/warehouse.duckdb"}, "destinations": destinations, **target}
    (root / "profiles.yml").write_text(yaml.safe_dump({"target": "dev", "targets": {"dev": dev}}, sort_keys=False))
    return root


@dataclass
class Convergence:
    """The runs it took until a run found nothing left to send."""

    results: list[SyncResult]

    @property
    def runs(self) -> int:
        return len(self.results)

    def statuses(self) -> list[list[str]]:
        return [[r.status for r in result.runs] for result in self.results]

    def total(self, attribute: str) -> int:
        return sum(getattr(r, attribute) for result in self.results for r in result.runs)


def converge(root: Path, selectors: list[str] | None = None, *, max_runs: int = 30) -> Convergence:
    """Sync until a run plans nothing for every selected sync; fail if that takes over ``max_runs``.

    Rejected and undelivered rows are not in the snapshot, so every run sends them again: under
    random faults the loop must end, and quickly. Runs that fail as a whole (a list lookup that
    ran out of retries) are allowed on the way; the end state is what the caller checks.
    """
    results: list[SyncResult] = []
    for _ in range(max_runs):
        result = reverse_etl.sync(root, selectors)
        results.append(result)
        if result.runs and all(r.status == "success" and not (r.added or r.changed or r.removed) for r in result.runs):
            return Convergence(results)
    history = [[(r.sync, r.status, r.added, r.changed, r.removed, r.sent, r.error) for r in x.runs] for x in results[-3:]]
    raise AssertionError(f"not converged after {max_runs} runs; last runs: {history}")


class Changing(Protocol):
    """A world the chaos tests change between runs and write for the models to read."""

    def mutate(self, rng: random.Random) -> None: ...

    def write(self, root: Path) -> None: ...


W = TypeVar("W", bound=Changing)


def play(root: Path, world: W, rng: random.Random, round_no: int,
         seen: Callable[[W], object] = lambda w: None) -> Convergence:
    """One round: the initial load, or a day of changes that lands while the syncs of the
    previous change are still settling: one run under faults (rows refused, answers lost, rows
    sent but not acknowledged), then the data moves again before the syncs converge. Rows
    rejected in that run may leave too: one applied by an attempt whose answer was lost and
    refused on the retry is still maybe held, so its removal is sent. ``seen`` is shown every
    state the model goes through."""
    first: list[SyncResult] = []
    if round_no:
        world.mutate(rng)
        world.write(root)
        seen(world)
        first.append(reverse_etl.sync(root))
        world.mutate(rng)
    world.write(root)
    seen(world)
    return Convergence(first + converge(root).results)


# --- the state store, read from outside ------------------------------------------------------
def state_path(root: Path) -> Path:
    return root / ".retl" / "state.duckdb"


def read_state(root: Path) -> dict[str, Any]:
    """Everything a check needs from the state store, read-only (which also proves it opens):
    each sync's snapshot keys, and the runs' statuses oldest first."""
    conn = duckdb.connect(str(state_path(root)), read_only=True)
    try:
        snapshots: dict[str, set[Any]] = {}
        for sync, table, keys in conn.execute("SELECT sync, snapshot_table, key_columns FROM _retl_syncs").fetchall():
            key = orjson.loads(keys)[0] if isinstance(keys, str) else next(iter(keys))
            rows = conn.execute(f'SELECT "{key}", "__retl_hash" FROM "{table}"').fetchall()
            snapshots[sync] = {k for k, h in rows if not is_maybe_held({"__retl_hash": h})}
        runs = [tuple(r) for r in conn.execute("SELECT sync, status FROM _retl_runs ORDER BY started_at").fetchall()]
        return {"snapshots": snapshots, "runs": runs}
    finally:
        conn.close()


def snapshot_rows(root: Path, sync: str, *, maybe: bool = False) -> dict[Any, dict[str, Any]]:
    """A sync's snapshot as key -> mapped values: the rows the destination is known to hold, or
    with ``maybe`` the rows recorded as maybe held (sent, no answer yet)."""
    conn = duckdb.connect(str(state_path(root)), read_only=True)
    try:
        found = conn.execute("SELECT snapshot_table, key_columns FROM _retl_syncs WHERE sync = ?", [sync]).fetchone()
        if found is None:
            return {}
        table, keys = found
        cursor = conn.execute(f'SELECT * FROM "{table}"')
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
        return {
            r[keys[0]]: {k: v for k, v in r.items() if not k.startswith("__retl") and k not in keys}
            for r in rows if is_maybe_held(r) == maybe
        }
    finally:
        conn.close()


def is_maybe_held(row: dict[str, Any]) -> bool:
    """A snapshot row written before its rows were sent (reverse_etl.diff.engine.MAYBE_HASH)."""
    return MAYBE_HASH is not None and row.get("__retl_hash") == MAYBE_HASH


# --- subprocesses ------------------------------------------------------------------------------
RETL = [sys.executable, "-m", "reverse_etl"]


def retl_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", **extra}


def start_retl(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """``retl --project-dir ROOT ARGS...`` as a child process (its own, so signals reach only it)."""
    return subprocess.Popen([*RETL, "--project-dir", str(root), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env or retl_env())


def wait_for(condition: Callable[[], bool], *, timeout: float, what: str, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll ``condition`` every few milliseconds; fail naming ``what`` (and the child's stderr)."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise AssertionError(f"the retl process ended (exit {proc.returncode}) before {what}: {err[-2000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.003)
