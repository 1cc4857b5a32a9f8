"""Benchmark: reverse_etl's diff engine vs a plain DuckDB full-outer-join hash diff.

A model of N users (~10 columns) whose destination snapshot already holds yesterday's rows;
today 1% of users are new, 1% are gone and 2% changed. Each side runs in a fresh child
process so its peak RSS is its own:

* engine   - ``reverse_etl.diff()`` on a project: load config, build the model, materialize it,
             check primary keys, diff against the snapshot in SQL, count, sample.
* baseline - one hand-written DuckDB statement, the plain way to write it: full outer join of the
             model with the snapshot on the key, compare a row hash, keep the rows that differ with
             what a sync must send (new values; the snapshot's values for removed rows).
             No config, no primary-key checks, no plan, no sample.

Usage: python benchmarks/diff.py [--rows 1000000,10000000] [--repeat 3]
Prints one line per size with both times, the ratio engine/baseline (goal <= 1.3) and peak
RSS (goal < 1.5 GB at 10M rows).

``--ack``: the cost of advancing the snapshot instead. A snapshot of ``--snapshot`` rows (stored
in shuffled key order, as one grown over many runs is) and a delta of 1% removed, 2% changed and
``--chunks`` x ``--chunk-rows`` added rows, acknowledged chunk by chunk as a sync checkpoints.
Each chunk is acknowledged twice, on two copies of the state: *before* runs every statement of
an acknowledgement (the delta's ack spans unknown, as before they were kept), *after* only those
the chunk needs. Prints the mean milliseconds per chunk by what the chunk holds, and the ratio.
Usage: python benchmarks/diff.py --ack [--snapshot 5000000] [--chunks 100] [--chunk-rows 10000]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent / ".data"
COLUMNS = "user_id, email, first_name, last_name, country, plan, ltv, orders, signup_at, active"
FIELDS = ["email", "first_name", "last_name", "country", "plan", "ltv", "orders", "signup_at", "active"]
GEN = """
        SELECT 'u' || lpad(i::VARCHAR, 9, '0') AS user_id, 'user' || i || '@example.com' AS email,
               'First' || (i % 997) AS first_name, 'Last' || (i % 1009) AS last_name,
               ['US','GB','DE','FR','CA'][1 + i % 5] AS country, ['free','pro','team'][1 + i % 3] AS plan,
               round((i % 10007) * 1.37, 2) AS ltv, (i % 53)::INTEGER AS orders,
               TIMESTAMP '2024-01-01' + to_seconds(i % 50000000) AS signup_at, i % 7 <> 0 AS active
        FROM range({lo}, {hi}) t(i)"""


def build(rows: int) -> Path:
    """Warehouse (today's users) and state (yesterday's snapshot) for ``rows`` users."""
    project = ROOT / f"p{rows}"
    if (project / "ready").exists():
        return project
    (project / "models").mkdir(parents=True, exist_ok=True)
    (project / "syncs").mkdir(exist_ok=True)
    (project / "models" / "users_model.sql").write_text(f"SELECT {COLUMNS} FROM users\n")
    fields = "\n".join(f"      {f}: {f}" for f in FIELDS)
    (project / "syncs" / "bench.yml").write_text(
        "syncs:\n  - name: bench\n    model: users_model\n    destination: braze\n    type: records\n    mode: mirror\n"
        f"    primary_key: user_id\n    identifiers: {{external_id: user_id}}\n    fields:\n{fields}\n"
    )
    (project / "profiles.yml").write_text(
        "target: dev\ntargets:\n  dev:\n    warehouse: {type: duckdb, path: warehouse.duckdb}\n"
        "    state: {path: state.duckdb}\n    destinations:\n      braze: {type: braze, sandbox: true}\n"
    )
    gen = GEN
    wh = duckdb.connect(str(project / "warehouse.duckdb"))
    # yesterday: users 0..N-1; today: 1% removed (the first 1%), 1% added (N..1.01N), 2% changed
    removed, added, changed = rows // 100, rows // 100, rows // 50
    wh.execute(f"CREATE OR REPLACE TABLE yesterday AS {gen.format(lo=0, hi=rows)}")
    wh.execute(f"CREATE OR REPLACE TABLE users AS {gen.format(lo=removed, hi=rows + added)}")
    wh.execute(f"UPDATE users SET plan = 'enterprise' WHERE user_id IN "
               f"(SELECT user_id FROM users WHERE user_id > 'u' || lpad('{removed}', 9, '0') ORDER BY user_id LIMIT {changed})")
    wh.close()
    # The snapshot of yesterday, written the way the engine writes it: diff + acknowledge everything.
    from reverse_etl.diff.engine import Differ, SyncColumns
    from reverse_etl.state import StateStore

    conn = duckdb.connect(":memory:")
    conn.execute(f"ATTACH '{project / 'warehouse.duckdb'}' AS wh (READ_ONLY)")
    state = StateStore.attach(conn, project / "state.duckdb")
    types = dict(conn.execute("SELECT column_name, data_type FROM duckdb_columns() WHERE database_name='wh' AND table_name='yesterday'").fetchall())
    cols = SyncColumns(key=["user_id"], values=sorted(FIELDS), hashed=sorted(FIELDS))
    snap = state.ensure_snapshot("bench", {"user_id": types["user_id"]}, {f: types[f] for f in cols.values}, cols.hashed)
    delta = Differ(conn).diff(model_table="wh.main.yesterday", snapshot_table=snap.table, columns=cols, sync_type="records", mode="mirror")
    Differ(conn).ack(delta, snap.table, 1, delta.rows, [])
    conn.close()
    (project / "ready").write_text("ok")
    return project


def child_engine(project: Path) -> dict[str, float]:
    import reverse_etl

    start = time.perf_counter()
    result = reverse_etl.diff(project, ["bench"], limit=5)
    elapsed = time.perf_counter() - start
    p = result.plans[0]
    return {"seconds": elapsed, "added": p.added, "changed": p.changed, "removed": p.removed}


def child_baseline(project: Path) -> dict[str, float]:
    start = time.perf_counter()
    conn = duckdb.connect(":memory:")
    conn.execute(f"ATTACH '{project / 'warehouse.duckdb'}' AS wh (READ_ONLY)")
    conn.execute(f"ATTACH '{project / 'state.duckdb'}' AS st (READ_ONLY)")
    snap = conn.execute("SELECT snapshot_table FROM st._retl_syncs WHERE sync = 'bench'").fetchone()[0]  # type: ignore[index]
    fields = sorted(FIELDS)
    struct = "{" + ", ".join(f"'{f}': n.{f}" for f in fields) + "}"
    conn.execute(f"""
        CREATE TABLE delta AS
        SELECT CASE WHEN o.user_id IS NULL THEN 'added' WHEN n.user_id IS NULL THEN 'removed' ELSE 'changed' END AS op,
               coalesce(n.user_id, o.user_id) AS user_id, {', '.join(f'CASE WHEN n.user_id IS NULL THEN o.{f} ELSE n.{f} END AS {f}' for f in fields)}
        FROM (SELECT *, hash({struct}) AS h FROM wh.main.users n) n
        FULL OUTER JOIN st.main."{snap}" o ON n.user_id = o.user_id
        WHERE o.user_id IS NULL OR n.user_id IS NULL OR n.h <> o.__retl_hash""")
    counts = dict(conn.execute("SELECT op, count(*) FROM delta GROUP BY op").fetchall())
    elapsed = time.perf_counter() - start
    conn.close()
    return {"seconds": elapsed, **{k: float(v) for k, v in counts.items()}}


def peak_rss_mb() -> float:
    # VmHWM, not ru_maxrss: ru_maxrss survives exec, so a child would report its parent's peak.
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(kind: str, project: Path) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child", kind, "--project", str(project)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- --ack: the snapshot advance ------------------------------------------------------------
ACK_TYPES = {"user_id": "VARCHAR", "email": "VARCHAR", "first_name": "VARCHAR", "last_name": "VARCHAR",
             "country": "VARCHAR", "plan": "VARCHAR", "ltv": "DOUBLE", "orders": "INTEGER",
             "signup_at": "TIMESTAMP", "active": "BOOLEAN"}


def ack_state(rows: int) -> Path:
    """A state file whose snapshot holds ``rows`` users, stored in shuffled key order."""
    from reverse_etl.diff.engine import SyncColumns
    from reverse_etl.sqlbuild import row_hash, sql
    from reverse_etl.state import StateStore

    path = ROOT / f"ack{rows}" / "state.duckdb"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = duckdb.connect(":memory:")
    state = StateStore.attach(conn, path)
    cols = SyncColumns(key=["user_id"], values=sorted(FIELDS), hashed=sorted(FIELDS))
    snap = state.ensure_snapshot("bench", {"user_id": "VARCHAR"}, {f: ACK_TYPES[f] for f in cols.values}, cols.hashed)
    conn.execute(f"CREATE TABLE memory.main.yesterday AS {GEN.format(lo=0, hi=rows)} ORDER BY hash(i)")
    # As the engine stores it: the values and its row hash.
    conn.execute(f"INSERT INTO {snap.table} SELECT user_id, {', '.join(cols.values)}, {sql(row_hash(cols.hashed, None))} "
                 "FROM memory.main.yesterday")
    conn.execute("CHECKPOINT retl_state")
    conn.close()
    return path


def ack_run(base: Path, rows: int, added: int, chunk_rows: int, before: bool) -> dict[str, list[float]]:
    """Diff today's users against a copy of ``base`` and acknowledge the delta chunk by chunk:
    seconds per chunk, keyed by the kinds of acknowledgement in it."""
    from reverse_etl.diff.engine import Differ, SyncColumns
    from reverse_etl.state import StateStore

    work = base.with_name("work.duckdb")
    shutil.copy(base, work)
    conn = duckdb.connect(":memory:")
    state = StateStore.attach(conn, work)
    cols = SyncColumns(key=["user_id"], values=sorted(FIELDS), hashed=sorted(FIELDS))
    snap = state.ensure_snapshot("bench", {"user_id": "VARCHAR"}, {f: ACK_TYPES[f] for f in cols.values}, cols.hashed)
    removed, changed = rows // 100, rows // 50
    conn.execute(f"CREATE TABLE memory.main.today AS {GEN.format(lo=removed, hi=rows + added)}")
    conn.execute(f"UPDATE memory.main.today SET plan = 'enterprise' WHERE user_id < 'u' || lpad('{removed + changed}', 9, '0')")
    differ = Differ(conn)
    delta = differ.diff(model_table="memory.main.today", snapshot_table=snap.table, columns=cols, sync_type="records", mode="mirror")
    if before:
        delta = dataclasses.replace(delta, spans=None)  # every statement in every chunk, as before
    times: dict[str, list[float]] = {}
    for lo in range(1, delta.rows + 1, chunk_rows):
        hi = min(lo + chunk_rows - 1, delta.rows)
        kinds = conn.execute(f"SELECT DISTINCT __retl_ack FROM {delta.table} WHERE __retl_seq BETWEEN {lo} AND {hi}").fetchall()
        differ.hold(delta, snap.table, lo, hi)
        start = time.perf_counter()
        differ.ack(delta, snap.table, lo, hi, [])
        times.setdefault("+".join(sorted(k[0] for k in kinds)), []).append(time.perf_counter() - start)
    final = conn.execute(f"SELECT count(*), bit_xor(hash(user_id, __retl_hash)) FROM {snap.table}").fetchone()
    times["_snapshot"] = [float(v) for v in final or ()]
    conn.close()
    work.unlink()
    return times


def ack_main(rows: int, chunks: int, chunk_rows: int, repeat: int) -> None:
    base = ack_state(rows)
    added = chunks * chunk_rows
    runs: dict[bool, list[dict[str, list[float]]]] = {True: [], False: []}
    for _ in range(repeat):  # alternating, so neither path has the warmer cache
        for before in (True, False):
            runs[before].append(ack_run(base, rows, added, chunk_rows, before=before))
    snapshots = {tuple(r.pop("_snapshot")) for rs in runs.values() for r in rs}
    assert len(snapshots) == 1, f"every run must leave the same snapshot: {snapshots}"
    print(f"snapshot {rows:,} rows; delta -{rows // 100:,} ~{rows // 50:,} +{added:,} in chunks of {chunk_rows:,}; "
          f"best of {repeat}")
    print(f"{'chunk holds':>22} {'chunks':>6} {'before ms':>10} {'after ms':>9} {'after/before':>12}")
    total = {True: 0.0, False: 0.0}
    for kind in sorted(runs[False][0], key=lambda k: ("delete" not in k, "replace" not in k, k)):
        n = len(runs[False][0][kind])
        best = {b: min(sum(r[kind]) for r in runs[b]) for b in (True, False)}
        for b in (True, False):
            total[b] += best[b]
        print(f"{kind:>22} {n:>6} {1000 * best[True] / n:>10.1f} {1000 * best[False] / n:>9.1f} "
              f"{best[False] / best[True]:>12.2f}")
    print(f"{'all chunks':>22} {'':>6} {total[True]:>9.2f}s {total[False]:>8.2f}s {total[False] / total[True]:>12.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="1000000,10000000", help="comma-separated model sizes")
    parser.add_argument("--repeat", type=int, default=3, help="runs per side; the best is reported")
    parser.add_argument("--child", choices=["engine", "baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--project", help=argparse.SUPPRESS)
    parser.add_argument("--ack", action="store_true", help="benchmark the snapshot advance instead (see above)")
    parser.add_argument("--snapshot", type=int, default=5_000_000, help="--ack: rows in the snapshot")
    parser.add_argument("--chunks", type=int, default=100, help="--ack: chunks of added rows")
    parser.add_argument("--chunk-rows", type=int, default=10_000, help="--ack: rows per chunk")
    args = parser.parse_args()
    if args.ack:
        ack_main(args.snapshot, args.chunks, args.chunk_rows, args.repeat)
        return
    if args.child:
        fn = child_engine if args.child == "engine" else child_baseline
        data = fn(Path(args.project))
        data["peak_rss_mb"] = peak_rss_mb()
        print(json.dumps(data))
        return
    print(f"{'rows':>11} {'engine s':>9} {'baseline s':>10} {'ratio':>6} {'engine RSS MB':>14} {'baseline RSS MB':>16}  delta (+added ~changed -removed)")
    for rows in [int(r) for r in args.rows.split(",")]:
        project = build(rows)
        engine = [measure("engine", project) for _ in range(args.repeat)]
        base = [measure("baseline", project) for _ in range(args.repeat)]
        e = min(engine, key=lambda d: d["seconds"])
        b = min(base, key=lambda d: d["seconds"])
        assert (e["added"], e["changed"], e["removed"]) == (b.get("added", 0), b.get("changed", 0), b.get("removed", 0)), (e, b)
        print(f"{rows:>11,} {e['seconds']:>9.2f} {b['seconds']:>10.2f} {e['seconds'] / b['seconds']:>6.2f} "
              f"{max(d['peak_rss_mb'] for d in engine):>14.0f} {max(d['peak_rss_mb'] for d in base):>16.0f}  "
              f"+{int(e['added'])} ~{int(e['changed'])} -{int(e['removed'])}")


if __name__ == "__main__":
    main()
