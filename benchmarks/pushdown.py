"""Benchmark: diff pushdown in PostgreSQL vs pulling the model into local DuckDB (``state: local``).

A throwaway PostgreSQL server (initdb/pg_ctl, loopback) holds a table of N users (10 columns);
the sync's snapshot already holds yesterday's rows, and today 1% of users are new, 1% gone and
2% changed. Both modes run the same sync through the runner:

* pushdown - state in the warehouse (``_retl``): the diff runs in PostgreSQL and only the delta
             rows are fetched; the acknowledgement is applied in PostgreSQL.
* local    - ``state: local``: the model's mapped columns are pulled into an in-process DuckDB
             and diffed against the local state file; acknowledgements are applied there.

Timed per mode, best of ``--repeat``: *diff+fetch* (build the model, pull it if local, check
keys, diff, plan with sample, fetch every delta row in chunks of 10,000 - everything a sync does
before sending) and once *sync* (the same, then the snapshot advanced by the whole delta in chunks
of 3,200 rows as a sync checkpoints: a whole sync but the HTTP). Bytes are counted by a TCP proxy between reverse_etl and PostgreSQL
(both directions, protocol overhead included).

Usage: python benchmarks/pushdown.py [--rows 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FIELDS = ["email", "first_name", "last_name", "country", "plan", "ltv", "orders", "signup_at", "active"]
CHUNK = 3_200


class CountingProxy:
    """A loopback TCP proxy that counts the bytes it relays."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.bytes = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(1 << 16):
                with self._lock:
                    self.bytes += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def populate(pg: Any, db: str, rows: int) -> None:
    from psycopg import sql

    with pg.connect(db) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} SET work_mem = '64MB'").format(sql.Identifier(db)))
        conn.execute(f"""
            CREATE TABLE users AS
            SELECT 'u' || lpad(i::text, 9, '0') AS user_id, 'user' || i || '@example.com' AS email,
                   'First' || (i % 997) AS first_name, 'Last' || (i % 1009) AS last_name,
                   (ARRAY['US','GB','DE','FR','CA'])[1 + i % 5] AS country, (ARRAY['free','pro','team'])[1 + i % 3] AS plan,
                   round((i % 10007) * 1.37, 2) AS ltv, (i % 53)::integer AS orders,
                   TIMESTAMP '2024-01-01' + (i % 50000000) * INTERVAL '1 second' AS signup_at, i % 7 <> 0 AS active
            FROM generate_series(0, {rows - 1}) AS i""")
        conn.execute("ALTER TABLE users ADD PRIMARY KEY (user_id)")
        conn.execute("ANALYZE users")


def change_today(pg: Any, db: str, rows: int) -> None:
    """1% new users, 1% gone, 2% changed."""
    step = 100
    with pg.connect(db) as conn:
        conn.execute(f"DELETE FROM users WHERE (substr(user_id, 2)::bigint) % {step} = 1")
        conn.execute(f"UPDATE users SET plan = 'enterprise' WHERE (substr(user_id, 2)::bigint) % {step // 2} = 2")
        conn.execute(f"""INSERT INTO users SELECT 'n' || lpad(i::text, 9, '0'), 'new' || i || '@example.com', 'F', 'L', 'US',
                         'free', 0, 0, TIMESTAMP '2025-01-01', true FROM generate_series(0, {rows // step - 1}) AS i""")
        conn.execute("ANALYZE users")


def write_project(root: Path, warehouse: dict[str, Any], local: bool) -> None:
    import yaml

    (root / "models").mkdir(parents=True, exist_ok=True)
    (root / "syncs").mkdir(exist_ok=True)
    (root / "models" / "users_model.sql").write_text(f"SELECT user_id, {', '.join(FIELDS)} FROM users\n")
    sync = {"name": "bench", "model": "users_model", "destination": "braze", "type": "records", "mode": "mirror",
            "primary_key": "user_id", "identifiers": {"external_id": "user_id"}, "fields": {f: f for f in FIELDS}}
    (root / "syncs" / "bench.yml").write_text(yaml.safe_dump({"syncs": [sync]}))
    target: dict[str, Any] = {"warehouse": warehouse, "destinations": {"braze": {"type": "braze", "sandbox": True}}}
    if local:
        target["state"] = {"type": "local", "path": "state.duckdb"}
    (root / "profiles.yml").write_text(yaml.safe_dump({"target": "dev", "targets": {"dev": target}}))


@contextmanager
def prepared(root: Path, *, preview: bool) -> Iterator[tuple[Any, Any]]:
    from reverse_etl.project import Project
    from reverse_etl.runner import Runner

    runner = Runner(Project.load(root))
    syncs = runner.project.select(None)
    with runner._session(syncs) as (session, state):
        differ = session.differ()
        item = runner._prepare(session, state, differ, syncs[0], full_resync=False, limit=5, preview=preview)
        yield (session, differ), item


def diff_and_fetch(root: Path) -> dict[str, int]:
    with prepared(root, preview=True) as ((session, _), item):
        fetched = 0
        for lo in range(1, item.delta.rows + 1, 10_000):
            fetched += len(session.fetch_delta(item.delta, lo, min(item.delta.rows, lo + 9_999)))
        return {"delta": item.delta.rows, "fetched": fetched}


def ack_all(root: Path) -> int:
    with prepared(root, preview=False) as ((session, differ), item):
        for lo in range(1, item.delta.rows + 1, CHUNK):
            hi = min(item.delta.rows, lo + CHUNK - 1)
            session.fetch_delta(item.delta, lo, hi)
            differ.ack(item.delta, item.snapshot_table, lo, hi, [])
        return int(item.delta.rows)


def timed(fn: Any, proxy: CountingProxy, *args: Any) -> tuple[float, int, Any]:
    before = proxy.bytes
    started = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - started, proxy.bytes - before, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from tests.warehouses.pg import pg_server

    work = Path(tempfile.mkdtemp(prefix="retl-bench-"))
    try:
        with pg_server() as pg:
            proxy = CountingProxy(pg.port)
            results: dict[str, dict[str, Any]] = {}
            for mode in ("pushdown", "local"):
                db = pg.create_database(f"bench_{mode}")
                populate(pg, db, args.rows)
                root = work / mode
                write_project(root, {**pg.warehouse(db), "port": proxy.port}, local=mode == "local")
                ack_all(root)  # yesterday: the destination holds every row
                change_today(pg, db, args.rows)
                best: tuple[float, int, Any] | None = None
                for _ in range(args.repeat):
                    run = timed(diff_and_fetch, proxy, root)
                    best = run if best is None or run[0] < best[0] else best
                assert best is not None
                ack_s, ack_bytes, acked = timed(ack_all, proxy, root)
                results[mode] = {"diff_s": best[0], "diff_bytes": best[1], "delta": best[2]["delta"],
                                 "ack_s": ack_s, "ack_bytes": ack_bytes, "acked": acked}
                after = diff_and_fetch(root)
                assert after["delta"] == 0, f"{mode}: the snapshot did not reach the model ({after})"
            print(f"rows={args.rows:,} (delta {results['pushdown']['delta']:,} rows: 1% added, 1% removed, 2% changed)")
            print(f"{'mode':<10}{'diff+fetch':>12}{'bytes':>14}{'sync':>10}{'bytes':>14}")
            for mode, r in results.items():
                print(f"{mode:<10}{r['diff_s']:>11.2f}s{r['diff_bytes'] / 1e6:>12.1f}MB{r['ack_s']:>9.2f}s{r['ack_bytes'] / 1e6:>12.2f}MB")
            p, l_ = results["pushdown"], results["local"]
            print(f"pushdown/local: time {p['diff_s'] / l_['diff_s']:.2f}, bytes {p['diff_bytes'] / max(1, l_['diff_bytes']):.3f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
