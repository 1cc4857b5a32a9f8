"""Run-long locks on a warehouse's state schema: one retl process advances its snapshots at a time.

A DuckDB state file is held by one process for a run; a state schema in a warehouse needs a
lock of its own, or two processes (two schedulers, a scheduler and a manual ``retl sync``) would
diff against the same snapshot and send the same delta twice. Each engine gets the strongest
lock it offers (``SqlWarehouse.state_lock``):

``AdvisoryLock``  PostgreSQL: ``pg_try_advisory_lock`` on the session; the server releases it when
                  the connection ends, however the process ends.
``LeaseLock``     Snowflake, BigQuery, Databricks: one row of ``<schema>._retl_lock`` claimed by a
                  single MERGE (inserted if absent, taken over if its lease expired), so exactly one
                  claimant's owner id ends up in the row; the claimant reads the row back to know.
                  A heartbeat on a connection of its own renews the lease every third of it; the
                  row is deleted at the end of the run. A process killed without releasing leaves
                  a row that another process takes over once its lease expired.
``FileLock``      Spark (local Parquet tables have no MERGE or DELETE): ``flock`` on a file in the
                  Spark warehouse directory; the OS releases it when the process dies. It keeps
                  apart processes on one host (local mode), not drivers on different hosts.

Times of a lease are the engine's own clock (``CURRENT_TIMESTAMP``), so hosts with skewed clocks
agree on when a lease expired.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson

from reverse_etl.errors import StateBusyError
from reverse_etl.warehouse.sql import lit, q

if TYPE_CHECKING:
    from reverse_etl.warehouse.sql import SqlSession

log = logging.getLogger("reverse_etl.warehouse")
LOCK_TABLE = "_retl_lock"
LOCK_NAME = "state"  # one lock per state schema: the table lives in it


def owner_id(token: str) -> str:
    """Who holds a lock, as shown to a process that is refused: host, pid and the run's token."""
    return f"{socket.gethostname()}:{os.getpid()}:{token}"


@dataclass(frozen=True)
class Holder:
    """The process holding a state lock, as far as the engine can say."""

    owner: str
    sync: str | None = None
    since: str | None = None
    until: str | None = None

    def describe(self) -> str:
        text = f"held by {self.owner}"
        if self.sync:
            text += f", running sync {self.sync!r}"
        if self.since:
            text += f", since {self.since}"
        if self.until:
            text += f", lease until {self.until}"
        return text


class StateLock(ABC):
    """A lock on one state schema for the length of a run."""

    lost: bool = False

    @abstractmethod
    def acquire(self) -> Holder | None:
        """Take the lock: None when taken, else who holds it. Never waits."""

    def running(self, sync: str) -> None:  # noqa: B027 - optional: only some locks can say
        """Record which sync the holder runs now (shown to a refused process)."""

    @abstractmethod
    def release(self) -> None:
        """Give the lock back; safe to call twice and after a failure."""

    def check(self, where: str) -> None:
        """Raise StateBusyError if the lock was lost (a lease taken over while this process stalled)."""
        if self.lost:
            raise StateBusyError(
                f"the lock on the state in {where} was taken over by another process after its lease expired",
                hint="this run stopped so the two do not send the same rows; the other process carries on",
            )


class NoLock(StateLock):
    def acquire(self) -> Holder | None:
        return None

    def release(self) -> None:
        pass


class AdvisoryLock(StateLock):
    """PostgreSQL's session-level advisory lock, keyed by the schema."""

    def __init__(self, session: SqlSession, schema: str) -> None:
        self.session = session
        self.key = f"hashtext({lit('reverse_etl state ' + schema)})"

    def acquire(self) -> Holder | None:
        row = self.session.run_native(f"SELECT pg_try_advisory_lock({self.key})")
        if row and row[0][0]:
            return None
        return self._holder()

    def _holder(self) -> Holder:
        # A bigint advisory key is kept as (classid, objid) = (high, low) 32 bits of the key.
        rows = self.session.run_native(
            "SELECT a.pid, a.application_name, CAST(a.backend_start AS TEXT) FROM pg_locks AS l "
            "JOIN pg_stat_activity AS a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
            f"AND l.objid = CAST(CAST({self.key} AS BIGINT) & 4294967295 AS OID) LIMIT 1"
        )
        if not rows:
            return Holder("another PostgreSQL session")
        pid, app, since = rows[0]
        return Holder(f"PostgreSQL backend pid {pid} ({app or 'no application_name'})", since=since)

    def release(self) -> None:
        pass  # session-level: the server releases it when the run's connection closes


class LeaseLock(StateLock):
    """A lease: the row ``LOCK_NAME`` of ``<schema>._retl_lock``, claimed atomically by MERGE."""

    def __init__(self, session: SqlSession, schema: str, lease_s: int,
                 connect: Callable[[], SqlSession] | None = None) -> None:
        self.session = session
        self.table = q(schema, LOCK_TABLE)
        self.where = f"{session.dialect} schema {schema!r}"
        self.lease_s = int(lease_s)
        self.owner = session.owner
        self.connect = connect  # a session of its own for the heartbeat; None: no heartbeat
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._held = False

    # --- statements (canonical SQL) -----------------------------------------------------
    def _expiry(self) -> str:
        return f"CURRENT_TIMESTAMP + INTERVAL {lit(f'{self.lease_s} SECOND')}"

    def create_sql(self) -> str:
        return (
            f'CREATE TABLE IF NOT EXISTS {self.table} ("name" TEXT NOT NULL, "owner" TEXT NOT NULL, "sync" TEXT, '
            '"acquired_at" TIMESTAMPTZ NOT NULL, "expires_at" TIMESTAMPTZ NOT NULL)'
        )

    def claim_sql(self) -> str:
        """Insert the lock row, or take it over if its lease expired: one statement, one winner."""
        me = lit(self.owner)
        return (
            f'MERGE INTO {self.table} AS l USING (SELECT {lit(LOCK_NAME)} AS "name") AS c ON l."name" = c."name" '
            f'WHEN MATCHED AND l."expires_at" < CURRENT_TIMESTAMP THEN UPDATE SET "owner" = {me}, "sync" = NULL, '
            f'"acquired_at" = CURRENT_TIMESTAMP, "expires_at" = {self._expiry()} '
            'WHEN NOT MATCHED THEN INSERT ("name", "owner", "sync", "acquired_at", "expires_at") '
            f"VALUES (c.\"name\", {me}, NULL, CURRENT_TIMESTAMP, {self._expiry()})"
        )

    def read_sql(self) -> str:
        return (
            'SELECT "owner", "sync", CAST("acquired_at" AS TEXT), CAST("expires_at" AS TEXT) '
            f'FROM {self.table} WHERE "name" = {lit(LOCK_NAME)}'
        )

    def renew_sql(self, sync: str | None = None) -> str:
        running = f', "sync" = {lit(sync)}' if sync is not None else ""
        return (
            f'UPDATE {self.table} SET "expires_at" = {self._expiry()}{running} '
            f'WHERE "name" = {lit(LOCK_NAME)} AND "owner" = {lit(self.owner)}'
        )

    def release_sql(self) -> str:
        return f'DELETE FROM {self.table} WHERE "name" = {lit(LOCK_NAME)} AND "owner" = {lit(self.owner)}'

    # --- the lock -----------------------------------------------------------------------
    def _read(self, session: SqlSession) -> Holder | None:
        rows = session.query(self.read_sql())
        if not rows:
            return None
        owner, sync, since, until = rows[0]
        return Holder(str(owner), sync, since, until)

    def acquire(self) -> Holder | None:
        s = self.session
        s.execute(self.create_sql())
        try:
            s.execute(self.claim_sql())
        except Exception:
            # An engine with optimistic concurrency (Delta, BigQuery) fails the loser of a race:
            # whoever won is in the row now.
            s.reset()
            holder = self._read(s)
            if holder is None or holder.owner == self.owner:
                raise
            return holder
        holder = self._read(s)
        if holder is None or holder.owner != self.owner:
            return holder or Holder("an unknown process (the lock row was gone when read back)")
        self._held = True
        self._start_heartbeat()
        return None

    def running(self, sync: str) -> None:
        if self._held:
            self.session.execute(self.renew_sql(sync))

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        if not self._held:
            return
        self._held = False
        try:
            self.session.execute(self.release_sql())
        except Exception as exc:  # a broken connection: the lease expires on its own
            self.session.reset()
            log.warning("could not release the state lock in %s (it expires in %ss): %s", self.where, self.lease_s, exc)

    # --- heartbeat ----------------------------------------------------------------------
    def renew(self, session: SqlSession) -> bool:
        """Extend the lease; False if another process holds the row now."""
        session.execute(self.renew_sql())
        holder = self._read(session)
        return holder is not None and holder.owner == self.owner

    def _start_heartbeat(self) -> None:
        if self.connect is None:
            return
        self._thread = threading.Thread(target=self._beat, name="retl-state-lease", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        assert self.connect is not None
        interval = max(self.lease_s / 3, 0.05)
        session: SqlSession | None = None
        try:
            while not self._stop.wait(interval):
                try:
                    session = session or self.connect()
                    if not self.renew(session):
                        self.lost = True
                        log.error("the state lock in %s was taken over by another process", self.where)
                        return
                except Exception as exc:  # a transient failure: the next beat tries again, within the lease
                    log.warning("could not renew the state lock in %s: %s", self.where, exc)
                    if session is not None:
                        session.reset()
        finally:
            if session is not None:
                _close(session)


def _close(session: SqlSession) -> None:
    try:
        session.dbapi.close()
    except Exception:  # closing a broken connection must not raise from the heartbeat
        pass


class FileLock(StateLock):
    """``flock`` on ``path``: held while the file is open, released by the OS with the process."""

    def __init__(self, path: Path, owner: str) -> None:
        self.path = path
        self.owner = owner
        self._file: IO[str] | None = None
        self._since = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")

    def acquire(self) -> Holder | None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held open for the run
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = _holder_from(handle.read())
            handle.close()
            return holder
        self._file = handle
        self._write(None)
        return None

    def _write(self, sync: str | None) -> None:
        assert self._file is not None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(orjson.dumps({"owner": self.owner, "sync": sync, "since": self._since}).decode())
        self._file.flush()

    def running(self, sync: str) -> None:
        if self._file is not None:
            self._write(sync)

    def release(self) -> None:
        if self._file is None:
            return
        # The file stays: removing it while another process waits on it would let two hold "it".
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
        finally:
            self._file.close()
            self._file = None


def _holder_from(text: str) -> Holder:
    try:
        data: dict[str, Any] = orjson.loads(text)
        return Holder(str(data["owner"]), data.get("sync"), data.get("since"))
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return Holder("another retl process on this host")
