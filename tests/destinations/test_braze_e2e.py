"""Braze end to end: real DuckDB, real HTTP to the strict emulator, for every sync type and mode.
After each run the emulator must hold exactly what the model says (and the mode allows)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import reverse_etl
from reverse_etl.sandbox import SandboxServer
from reverse_etl.sandbox.braze import BrazeEmulator
from tests.conftest import braze_destination
from tests.helpers import audience_sync, records_sync, set_model, values_sql, write_project

COLS = ["user_id", "plan", "ltv", "country"]
FIELDS = ("plan", "ltv", "country")
Rows = list[tuple[Any, ...]]


def emulator_of(server: SandboxServer) -> BrazeEmulator:
    emulator = server.emulator
    assert isinstance(emulator, BrazeEmulator)
    return emulator


def held(emulator: BrazeEmulator, fields: tuple[str, ...] = FIELDS) -> dict[str, dict[str, Any]]:
    """external_id -> the mapped fields Braze holds for that user."""
    return {uid: {f: p[f] for f in fields if f in p} for uid, p in emulator.users().items()}


def as_model(rows: Rows, fields: tuple[str, ...] = FIELDS) -> dict[str, dict[str, Any]]:
    return {r[0]: {f: v for f, v in zip(fields, r[1:], strict=True) if v is not None} for r in rows}


def project(root: Path, server: SandboxServer, rows: Rows, **sync: Any) -> None:
    write_project(root, models={"traits": values_sql(COLS, rows)},
                  syncs={"traits": [records_sync(fields={f: f for f in FIELDS}, **sync)]},
                  destinations=braze_destination(server))


def sync_ok(root: Path, sent: int | None = None) -> None:
    result = reverse_etl.sync(root)
    assert result.exit_code == 0, result.as_dict()
    if sent is not None:
        assert result.runs[0].sent == sent, result.as_dict()


V1: Rows = [("u1", "pro", 10.5, "US"), ("u2", "free", 0.0, "DE"), ("u3", "team", 3.0, "FR")]
V2: Rows = [("u1", "enterprise", 99.0, "US"), ("u3", "team", 3.0, "FR"), ("u4", "free", 1.0, "GB")]


def test_records_upsert(tmp_path: Path, braze: SandboxServer) -> None:
    project(tmp_path, braze, V1)
    sync_ok(tmp_path, 3)
    assert held(emulator_of(braze)) == as_model(V1)
    set_model(tmp_path, "traits", values_sql(COLS, V2))
    sync_ok(tmp_path, 2)  # u1 changed, u4 added; u2 left the model but upsert removes nothing
    assert held(emulator_of(braze)) == {**as_model(V1), **as_model(V2)}
    sync_ok(tmp_path, 0)


def test_records_insert_sends_new_rows_only(tmp_path: Path, braze: SandboxServer) -> None:
    project(tmp_path, braze, V1, mode="insert")
    sync_ok(tmp_path, 3)
    set_model(tmp_path, "traits", values_sql(COLS, V2))
    sync_ok(tmp_path, 1)  # only u4: insert never updates u1
    assert held(emulator_of(braze)) == {**as_model(V1), **as_model([V2[2]])}


def test_records_update_never_creates(tmp_path: Path, braze: SandboxServer) -> None:
    project(tmp_path, braze, V1)
    sync_ok(tmp_path)
    project(tmp_path, braze, V2, mode="update", name="updates", model="traits")
    sync_ok(tmp_path)
    emulator = emulator_of(braze)
    assert "u4" not in emulator.users()  # unknown to Braze: skipped, not created
    assert held(emulator) == {**as_model(V1), **{k: v for k, v in as_model(V2).items() if k != "u4"}}


@pytest.mark.parametrize("on_remove", ["clear", "delete"])
def test_records_mirror(tmp_path: Path, braze: SandboxServer, on_remove: str) -> None:
    project(tmp_path, braze, V1, mode="mirror", on_remove=on_remove)
    sync_ok(tmp_path, 3)
    set_model(tmp_path, "traits", values_sql(COLS, V2))
    sync_ok(tmp_path, 3)  # u1 changed, u4 added, u2 removed
    emulator = emulator_of(braze)
    expected = as_model(V2)
    if on_remove == "clear":
        expected["u2"] = {}  # the profile stays, its mapped fields are gone
    assert held(emulator) == expected
    sync_ok(tmp_path, 0)


def audience_project(root: Path, server: SandboxServer, members: list[str], **sync: Any) -> None:
    write_project(root, models={"members": values_sql(["user_id"], [(m,) for m in members])},
                  syncs={"audiences": [audience_sync(**sync)]}, destinations=braze_destination(server))


def test_audience_boolean_mirror(tmp_path: Path, braze: SandboxServer) -> None:
    audience_project(tmp_path, braze, ["u1", "u2", "u3"])
    sync_ok(tmp_path, 3)
    set_model(tmp_path, "members", values_sql(["user_id"], [("u1",), ("u4",)]))
    sync_ok(tmp_path, 3)
    assert held(emulator_of(braze), ("vip",)) == {"u1": {"vip": True}, "u2": {"vip": False}, "u3": {"vip": False}, "u4": {"vip": True}}


@pytest.mark.parametrize("mode", ["mirror", "add"])
def test_audience_array(tmp_path: Path, braze: SandboxServer, mode: str) -> None:
    spec = {"name": "vip", "membership": "array", "attribute": "segments"}
    audience_project(tmp_path, braze, ["u1", "u2"], mode=mode, audience=spec)
    sync_ok(tmp_path, 2)
    set_model(tmp_path, "members", values_sql(["user_id"], [("u2",), ("u3",)]))
    sync_ok(tmp_path, 2 if mode == "mirror" else 1)
    expected = {"u1": [] if mode == "mirror" else ["vip"], "u2": ["vip"], "u3": ["vip"]}
    assert {uid: p["segments"] for uid, p in held(emulator_of(braze), ("segments",)).items()} == expected


def test_audience_remove_mode_takes_model_rows_out(tmp_path: Path, braze: SandboxServer) -> None:
    audience_project(tmp_path, braze, ["u1", "u2"], name="add", model="members")
    sync_ok(tmp_path)
    write_project(tmp_path, models={"members": values_sql(["user_id"], [("u1",), ("u2",)]),
                                    "leavers": values_sql(["user_id"], [("u2",)])},
                  syncs={"audiences": [audience_sync(name="add", model="members"),
                                       audience_sync(name="remove", model="leavers", mode="remove")]},
                  destinations=braze_destination(braze))
    assert reverse_etl.sync(tmp_path, ["remove"]).exit_code == 0
    assert held(emulator_of(braze), ("vip",)) == {"u1": {"vip": True}, "u2": {"vip": False}}


def test_subscription_group_mirror(tmp_path: Path, braze: SandboxServer) -> None:
    audience_project(tmp_path, braze, [f"u{i}" for i in range(60)], audience={"subscription_group_id": "grp-news"})
    sync_ok(tmp_path, 60)
    set_model(tmp_path, "members", values_sql(["user_id"], [(f"u{i}",) for i in range(10, 70)]))
    sync_ok(tmp_path, 20)
    emulator = emulator_of(braze)
    states = {f"u{i}": emulator.subscription_state("grp-news", f"u{i}") for i in range(70)}
    assert states == {f"u{i}": "unsubscribed" if i < 10 else "subscribed" for i in range(70)}


def test_events_each_sent_once(tmp_path: Path, braze: SandboxServer) -> None:
    rows = [(f"e{i}", f"u{i % 3}", f"2026-01-0{1 + i % 5} 10:00:00", i * 1.5, "click" if i % 2 else "view") for i in range(12)]
    model = values_sql(["event_id", "user_id", "ts", "amount", "kind"], rows).replace(
        "SELECT *", "SELECT event_id, user_id, ts::TIMESTAMP AS ts, amount, kind")
    sync = {"name": "orders", "model": "orders", "destination": "braze", "type": "events", "primary_key": "event_id",
            "identifiers": {"external_id": "user_id"}, "event": {"name": {"column": "kind"}, "time": "ts"},
            "fields": {"event_id": "event_id", "amount": "amount"}}
    write_project(tmp_path, models={"orders": model}, syncs={"events": [sync]}, destinations=braze_destination(braze))
    sync_ok(tmp_path, 12)
    sync_ok(tmp_path, 0)
    got = sorted((uid, e["name"], e["properties"]["event_id"], e["properties"]["amount"], e["time"][:19])
                 for uid, u in emulator_of(braze).users().items() for e in u["events"])
    assert got == sorted((r[1], r[4], r[0], r[3], r[2].replace(" ", "T")) for r in rows)


CATALOG_COLS = ["sku", "title", "price"]
C1: Rows = [("s1", "Cable", 9.99), ("s2", "Plug", 3.5), ("s3", "Lamp", 20.0)]
C2: Rows = [("s1", "Cable v2", 11.0), ("s3", "Lamp", 20.0), ("s4", "Fan", 30.0)]


def catalog_project(root: Path, server: SandboxServer, rows: Rows, mode: str, name: str = "products") -> None:
    sync = {"name": name, "model": "products", "destination": "braze", "type": "records", "mode": mode,
            "primary_key": "sku", "identifiers": {"id": "sku"}, "catalog": "products",
            "fields": {"title": "title", "price": "price"}}
    write_project(root, models={"products": values_sql(CATALOG_COLS, rows)}, syncs={"catalog": [sync]},
                  destinations=braze_destination(server))


def items(rows: Rows) -> dict[str, dict[str, Any]]:
    return {r[0]: {"id": r[0], "title": r[1], "price": r[2]} for r in rows}


@pytest.mark.parametrize("mode", ["upsert", "insert", "mirror"])
def test_catalog_items(tmp_path: Path, braze: SandboxServer, mode: str) -> None:
    emulator = emulator_of(braze)
    emulator.create_catalog("products", ["title", "price"])
    catalog_project(tmp_path, braze, C1, mode)
    sync_ok(tmp_path, 3)
    assert emulator.catalog_items("products") == items(C1)
    set_model(tmp_path, "products", values_sql(CATALOG_COLS, C2))
    sync_ok(tmp_path)
    expected = {
        "upsert": {**items(C1), **items(C2)},
        "insert": {**items(C1), **items(C2[2:])},  # insert never replaces s1
        "mirror": items(C2),
    }[mode]
    assert emulator.catalog_items("products") == expected
    sync_ok(tmp_path, 0)


def test_catalog_update_patches_existing_items_only(tmp_path: Path, braze: SandboxServer) -> None:
    emulator = emulator_of(braze)
    emulator.create_catalog("products", ["title", "price"])
    catalog_project(tmp_path, braze, C1, "upsert")
    sync_ok(tmp_path)
    catalog_project(tmp_path, braze, C2, "update", name="patch")
    sync_ok(tmp_path)
    assert emulator.catalog_items("products") == {**items(C1), **items(C2[:2])}  # s4 is not created


def test_a_missing_catalog_stops_the_sync_and_says_how_to_fix_it(tmp_path: Path, braze: SandboxServer) -> None:
    catalog_project(tmp_path, braze, C1, "upsert")
    result = reverse_etl.sync(tmp_path)
    run = result.runs[0]
    assert result.exit_code == 1 and run.status == "error"
    assert "no catalog 'products'" in (run.error or "") and "create the catalog" in (run.error or "")


def test_invalid_rows_are_rejected_locally_never_sent_and_listed(tmp_path: Path, braze: SandboxServer) -> None:
    rows: Rows = [("u1", "pro", 1.0, "US"), ("u2", "pro", 1.0, "ZZ"), ("u3", "p" * 300, 1.0, "FR")]
    project(tmp_path, braze, rows)
    result = reverse_etl.sync(tmp_path)
    run = result.runs[0]
    assert result.exit_code == 2 and (run.sent, run.rejected) == (1, 2)
    emulator = emulator_of(braze)
    assert set(emulator.users()) == {"u1"}
    assert emulator.requests_to("/users/track") == 1
    detail = reverse_etl.run_detail(tmp_path, run.run_id or "")
    reasons = {e.row_key: e.reason for e in detail.errors}
    assert "country must be an ISO-3166-1 alpha-2 code" in reasons["u2"] and "(column country)" in reasons["u2"]
    assert "plan is 300 characters" in reasons["u3"]
    assert {e.kind for e in detail.errors} == {"rejected"} and {e.action for e in detail.errors} == {"upsert"}
