"""End to end: real DuckDB, real HTTP to the strict Braze emulator on loopback, real state file."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from pathlib import Path

import duckdb
import pytest

import reverse_etl
from reverse_etl.destinations.braze.destination import BrazeDestination
from reverse_etl.sandbox import Faults, SandboxServer
from reverse_etl.sandbox.braze import BrazeEmulator
from tests.conftest import braze_destination
from tests.helpers import audience_sync, records_sync, set_model, values_sql, write_project

TRAIT_COLS = ["user_id", "plan", "ltv", "country"]


def snapshot_keys(root: Path, sync: str) -> set[str]:
    conn = duckdb.connect(str(root / ".retl" / "state.duckdb"), read_only=True)
    try:
        table = conn.execute("SELECT snapshot_table FROM _retl_syncs WHERE sync = ?", [sync]).fetchone()
        return {r[0] for r in conn.execute(f'SELECT user_id FROM "{table[0]}"').fetchall()} if table else set()
    finally:
        conn.close()


def test_audience_mirror_join_leave_and_idempotent_rerun(tmp_path: Path, braze: SandboxServer) -> None:
    emulator: BrazeEmulator = braze.emulator  # type: ignore[assignment]
    write_project(tmp_path, models={"members": values_sql(["user_id"], [("u1",), ("u2",), ("u3",)])},
                  syncs={"audiences": [audience_sync()]}, destinations=braze_destination(braze))
    first = reverse_etl.sync(tmp_path, ["audiences"])
    assert first.exit_code == 0
    run = first.runs[0]
    assert (run.status, run.added, run.removed, run.sent) == ("success", 3, 0, 3)
    assert {uid: u["vip"] for uid, u in emulator.users().items()} == {"u1": True, "u2": True, "u3": True}

    set_model(tmp_path, "members", values_sql(["user_id"], [("u1",), ("u4",)]))
    second = reverse_etl.sync(tmp_path, ["audiences"]).runs[0]
    assert (second.added, second.removed, second.sent) == (1, 2, 3)
    assert {uid: u["vip"] for uid, u in emulator.users().items()} == {"u1": True, "u2": False, "u3": False, "u4": True}

    third = reverse_etl.sync(tmp_path, ["audiences"]).runs[0]
    assert (third.added, third.changed, third.removed, third.sent) == (0, 0, 0, 0)


def test_audience_add_and_remove_modes(tmp_path: Path, braze: SandboxServer) -> None:
    emulator: BrazeEmulator = braze.emulator  # type: ignore[assignment]
    write_project(
        tmp_path,
        models={"joiners": values_sql(["user_id"], [("u1",), ("u2",)]), "leavers": values_sql(["user_id"], [("u2",)])},
        syncs={"audiences": [
            audience_sync(name="add", model="joiners", mode="add", audience={"name": "vip", "membership": "array"}),
            audience_sync(name="remove", model="leavers", mode="remove", audience={"name": "vip", "membership": "array"}),
        ]},
        destinations=braze_destination(braze),
    )
    assert reverse_etl.sync(tmp_path, ["add"]).exit_code == 0
    assert emulator.user("u2")["retl_audiences"] == ["vip"]  # type: ignore[index]
    assert reverse_etl.sync(tmp_path, ["remove"]).exit_code == 0
    assert emulator.user("u1")["retl_audiences"] == ["vip"]  # type: ignore[index]
    assert emulator.user("u2")["retl_audiences"] == []  # type: ignore[index]
    # add mode never takes anyone out when they leave the model
    set_model(tmp_path, "joiners", values_sql(["user_id"], [("u2",)]))
    run = reverse_etl.sync(tmp_path, ["add"]).runs[0]
    assert (run.added, run.removed) == (0, 0)
    assert emulator.user("u1")["retl_audiences"] == ["vip"]  # type: ignore[index]


def test_records_upsert_update_and_mirror_clear(tmp_path: Path, braze: SandboxServer) -> None:
    emulator: BrazeEmulator = braze.emulator  # type: ignore[assignment]
    rows = [("u1", "pro", 10.5, "US"), ("u2", "free", 0.0, "DE")]
    write_project(
        tmp_path, models={"traits": values_sql(TRAIT_COLS, rows), "updates": values_sql(TRAIT_COLS, [("u1", "team", 1.0, "US"), ("u9", "x", 1.0, "US")])},
        syncs={
            "traits": [records_sync(mode="mirror", fields={"plan": "plan", "ltv": "ltv", "country": "country"})],
            "updates": [records_sync(name="updates", model="updates", mode="update")],
        },
        destinations=braze_destination(braze),
    )
    assert reverse_etl.sync(tmp_path, ["traits"]).exit_code == 0
    assert emulator.user("u1") is not None
    assert {k: emulator.user("u1")[k] for k in ("plan", "ltv", "country")} == {"plan": "pro", "ltv": 10.5, "country": "US"}  # type: ignore[index]

    set_model(tmp_path, "traits", values_sql(TRAIT_COLS, [("u1", "enterprise", 99.0, "US")]))
    run = reverse_etl.sync(tmp_path, ["traits"]).runs[0]
    assert (run.added, run.changed, run.removed, run.sent) == (0, 1, 1, 2)
    assert emulator.user("u1")["plan"] == "enterprise"  # type: ignore[index]
    u2 = emulator.user("u2")
    assert u2 is not None and not any(k in u2 for k in ("plan", "ltv", "country"))  # cleared, not deleted

    # update mode never creates a profile: u9 is unknown to Braze and stays unknown
    assert reverse_etl.sync(tmp_path, ["updates"]).exit_code == 0
    assert emulator.user("u1")["plan"] == "team"  # type: ignore[index]
    assert emulator.user("u9") is None


def test_records_mirror_delete(tmp_path: Path, braze: SandboxServer) -> None:
    emulator: BrazeEmulator = braze.emulator  # type: ignore[assignment]
    write_project(tmp_path, models={"traits": values_sql(TRAIT_COLS, [("u1", "a", 1.0, "US"), ("u2", "b", 2.0, "US")])},
                  syncs={"traits": [records_sync(mode="mirror", on_remove="delete")]}, destinations=braze_destination(braze))
    reverse_etl.sync(tmp_path)
    set_model(tmp_path, "traits", values_sql(TRAIT_COLS, [("u1", "a", 1.0, "US")]))
    run = reverse_etl.sync(tmp_path).runs[0]
    assert (run.removed, run.sent) == (1, 1)
    assert emulator.user("u2") is None and emulator.user("u1") is not None


def test_events_are_sent_once(tmp_path: Path, braze: SandboxServer) -> None:
    emulator: BrazeEmulator = braze.emulator  # type: ignore[assignment]
    events = [("e1", "u1", "2026-01-01 10:00:00", 5.0), ("e2", "u1", "2026-01-02 10:00:00", 7.5)]
    model = values_sql(["event_id", "user_id", "ts", "amount"], events).replace("SELECT *", "SELECT event_id, user_id, ts::TIMESTAMP AS ts, amount")
    sync = {"name": "orders", "model": "orders", "destination": "braze", "type": "events", "primary_key": "event_id",
            "identifiers": {"external_id": "user_id"}, "event": {"name": "purchase", "time": "ts"}, "fields": {"amount": "amount"}}
    write_project(tmp_path, models={"orders": model}, syncs={"events": [sync]}, destinations=braze_destination(braze))
    assert reverse_etl.sync(tmp_path).runs[0].sent == 2
    assert reverse_etl.sync(tmp_path).runs[0].sent == 0
    sent = emulator.user("u1")["events"]  # type: ignore[index]
    assert [(e["name"], e["properties"]["amount"]) for e in sent] == [("purchase", 5.0), ("purchase", 7.5)]
    assert sent[0]["time"].startswith("2026-01-01T10:00:00")


def test_rejected_rows_are_recorded_and_retried_accepted_not_resent(tmp_path: Path, braze: SandboxServer) -> None:
    emulator: BrazeEmulator = braze.emulator  # type: ignore[assignment]
    rows = [("u1", "pro", 1.0, "US"), ("u2", "pro", 1.0, "ZZ"), ("u3", "pro", 1.0, "FR")]
    write_project(tmp_path, models={"traits": values_sql(TRAIT_COLS, rows)},
                  syncs={"traits": [records_sync(fields={"plan": "plan", "country": "country"})]}, destinations=braze_destination(braze))
    result = reverse_etl.sync(tmp_path)
    run = result.runs[0]
    assert result.exit_code == 2
    assert (run.status, run.sent, run.rejected) == ("partial", 2, 1)
    assert snapshot_keys(tmp_path, "traits") == {"u1", "u3"}
    assert emulator.user("u2") is None
    detail = reverse_etl.run_detail(tmp_path, run.run_id or "")
    assert [(e.row_key, e.kind) for e in detail.errors] == [("u2", "rejected")]
    assert "country" in detail.errors[0].reason

    # Still broken: only u2 is tried again.
    again = reverse_etl.sync(tmp_path).runs[0]
    assert (again.added, again.sent, again.rejected) == (1, 0, 1)
    # Fixed in the warehouse: u2 goes through, nothing else is sent.
    set_model(tmp_path, "traits", values_sql(TRAIT_COLS, [("u1", "pro", 1.0, "US"), ("u2", "pro", 1.0, "GB"), ("u3", "pro", 1.0, "FR")]))
    fixed = reverse_etl.sync(tmp_path)
    assert fixed.exit_code == 0 and fixed.runs[0].sent == 1
    assert emulator.user("u2")["country"] == "GB"  # type: ignore[index]


def test_transient_faults_are_retried_until_everything_lands(tmp_path: Path) -> None:
    emulator = BrazeEmulator(faults=Faults(fail_rate=0.2, throttle_rate=0.1, drop_rate=0.1, seed=3))
    with SandboxServer(emulator) as server:
        rows = [(f"u{i}",) for i in range(300)]
        write_project(tmp_path, models={"members": values_sql(["user_id"], rows)}, syncs={"audiences": [audience_sync()]},
                      destinations={"braze": {"type": "braze", "base_url": server.url, "api_key": "sandbox-key",
                                              "max_retries": 8, "batch_size": 10}})
        result = reverse_etl.sync(tmp_path)
        assert result.exit_code == 0, result.as_dict()
        assert result.runs[0].sent == 300
        assert len(emulator.users()) == 300
        statuses = {status for _, _, status in emulator.request_log}
        assert {0, 503, 429} <= statuses  # the faults really happened


def test_wrong_api_key_fails_cleanly_and_changes_nothing(tmp_path: Path, braze: SandboxServer) -> None:
    write_project(tmp_path, models={"members": values_sql(["user_id"], [("u1",)])}, syncs={"audiences": [audience_sync()]},
                  destinations={"braze": {"type": "braze", "base_url": braze.url, "api_key": "wrong-key-123"}})
    result = reverse_etl.sync(tmp_path)
    run = result.runs[0]
    assert result.exit_code == 1 and run.status == "error"
    assert "401" in (run.error or "") and "wrong-key-123" not in (run.error or "")
    assert snapshot_keys(tmp_path, "members") == set()


def test_guard_refuses_large_removals_unless_forced(tmp_path: Path, braze: SandboxServer) -> None:
    emulator: BrazeEmulator = braze.emulator  # type: ignore[assignment]
    write_project(tmp_path, models={"members": values_sql(["user_id"], [(f"u{i}",) for i in range(10)])},
                  syncs={"audiences": [audience_sync(guard={"max_removals": "10%"})]}, destinations=braze_destination(braze))
    reverse_etl.sync(tmp_path)
    set_model(tmp_path, "members", values_sql(["user_id"], [(f"u{i}",) for i in range(5)]))
    refused = reverse_etl.sync(tmp_path)
    assert refused.exit_code == 1 and refused.runs[0].status == "guard"
    assert "max_removals" in (refused.runs[0].error or "")
    assert emulator.user("u9")["vip"] is True  # type: ignore[index]
    forced = reverse_etl.sync(tmp_path, force=True)
    assert forced.exit_code == 0 and forced.runs[0].removed == 5
    assert emulator.user("u9")["vip"] is False  # type: ignore[index]


def test_duplicate_keys_stop_that_sync_and_send_nothing(tmp_path: Path, braze: SandboxServer) -> None:
    emulator: BrazeEmulator = braze.emulator  # type: ignore[assignment]
    write_project(tmp_path, models={"members": values_sql(["user_id"], [("u1",), ("u1",)]), "ok": values_sql(["user_id"], [("u7",)])},
                  syncs={"audiences": [audience_sync(), audience_sync(name="ok", model="ok")]}, destinations=braze_destination(braze))
    result = reverse_etl.sync(tmp_path)
    by_name = {r.sync: r for r in result.runs}
    assert result.exit_code == 1
    assert by_name["members"].status == "error" and "not unique" in (by_name["members"].error or "")
    assert by_name["ok"].status == "success"
    assert set(emulator.users()) == {"u7"}


def test_pointing_a_sync_at_another_destination_starts_its_snapshot_afresh(tmp_path: Path, braze: SandboxServer) -> None:
    write_project(tmp_path, models={"members": values_sql(["user_id"], [("u1",), ("u2",)])},
                  syncs={"audiences": [audience_sync()]}, destinations=braze_destination(braze))
    assert reverse_etl.sync(tmp_path).runs[0].sent == 2
    with SandboxServer(BrazeEmulator()) as other:
        # same sync, same state file, another Braze (e.g. switching target dev -> prod)
        write_project(tmp_path, models={"members": values_sql(["user_id"], [("u1",), ("u2",)])},
                      syncs={"audiences": [audience_sync()]}, destinations=braze_destination(other))
        preview = reverse_etl.diff(tmp_path).plans[0]
        assert (preview.added, preview.reset is not None) == (2, True)
        assert snapshot_keys(tmp_path, "members") == {"u1", "u2"}  # a preview changes nothing
        run = reverse_etl.sync(tmp_path).runs[0]
        assert run.sent == 2
        assert set(other.emulator.users()) == {"u1", "u2"}  # type: ignore[attr-defined]
    # renaming the audience is another target too: everyone joins the new one
    write_project(tmp_path, models={"members": values_sql(["user_id"], [("u1",), ("u2",)])},
                  syncs={"audiences": [audience_sync(audience={"name": "vip2"})]}, destinations=braze_destination(braze))
    assert reverse_etl.sync(tmp_path).runs[0].sent == 2
    assert braze.emulator.user("u1")["vip2"] is True  # type: ignore[attr-defined]


def test_a_failing_warm_up_only_loses_the_head_start(tmp_path: Path, braze: SandboxServer,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    called = threading.Event()

    def broken(self: BrazeDestination) -> None:
        called.set()
        raise RuntimeError("warm-up failed")

    monkeypatch.setattr(BrazeDestination, "warm_up", broken)
    write_project(tmp_path, models={"members": values_sql(["user_id"], [("u1",), ("u2",)])},
                  syncs={"audiences": [audience_sync()]}, destinations=braze_destination(braze))
    run = reverse_etl.sync(tmp_path, ["audiences"]).runs[0]
    assert called.wait(5)  # started on its own thread while the sync ran
    assert (run.status, run.sent) == ("success", 2)


def test_braze_warm_up_loads_the_writer_and_the_json_engine() -> None:
    code = (
        "import sys\nfrom reverse_etl.destinations import columnar\n"
        "from reverse_etl.destinations.braze.destination import BrazeDestination\n"
        "assert 'reverse_etl.destinations.braze.writer' not in sys.modules and columnar._engine.cache_info().currsize == 0\n"
        "BrazeDestination.warm_up(None)\n"
        "assert 'reverse_etl.destinations.braze.writer' in sys.modules and columnar._engine.cache_info().currsize == 1\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr


def test_a_destination_that_cannot_be_reached_stops_the_run_after_one_chunk(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rows = [(f"u{i}", "pro", i, "US") for i in range(6000)]
    write_project(tmp_path, models={"traits": values_sql(TRAIT_COLS, rows)}, syncs={"traits": [records_sync()]},
                  destinations={"braze": {"type": "braze", "api_key": "k", "base_url": f"http://127.0.0.1:{port}",
                                          "max_retries": 1}})
    result = reverse_etl.sync(tmp_path, ["traits"])
    run = result.runs[0]
    assert result.exit_code != 0 and run.status == "error"
    assert "cannot be reached" in (run.error or "") and f"127.0.0.1:{port}" in (run.error or "")
    assert run.sent == 0 and 0 < run.failed < len(rows)  # stopped after the first chunk, not one request at a time
    assert snapshot_keys(tmp_path, "traits") == set()
