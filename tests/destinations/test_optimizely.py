"""Optimizely Experimentation: golden request bodies, the writers through MockTransport, and
end-to-end runs whose final emulator state must equal the model, for every mode."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

import reverse_etl
from reverse_etl.config.syncs import SyncConfig
from reverse_etl.delivery.client import DeliveryClient
from reverse_etl.destinations.base import ChunkResult, DeltaRow, MemoryState, Writer, dumps
from reverse_etl.destinations.optimizely import payload
from reverse_etl.destinations.optimizely.config import (
    OBJECTS,
    OptimizelyAudience,
    OptimizelyConfig,
    OptimizelyEvent,
)
from reverse_etl.destinations.optimizely.destination import OptimizelyDestination
from reverse_etl.destinations.registry import destination_class
from reverse_etl.errors import ConfigError
from reverse_etl.sandbox import Faults, SandboxServer
from reverse_etl.sandbox.optimizely import OptimizelyEmulator
from tests.helpers import set_model, values_sql, write_project

REPO = Path(__file__).resolve().parents[2]
PROJECT = 1000


# --- helpers ---------------------------------------------------------------------------------
def sync(**overrides: Any) -> SyncConfig:
    base: dict[str, Any] = {
        "name": "vip", "model": "vip", "destination": "optimizely", "type": "audience", "mode": "mirror",
        "primary_key": "user_id", "identifiers": {"user_id": "user_id"},
        "audience": {"list_attribute": "retl_vip", "key_field": "uid", "list_type": "cookies"},
    }
    base.update(overrides)
    return SyncConfig.model_validate(base)


def event_sync(**overrides: Any) -> SyncConfig:
    base: dict[str, Any] = {
        "name": "orders", "type": "events", "mode": "insert", "primary_key": "order_id", "audience": None,
        "identifiers": {"visitor_id": "user_id"}, "fields": {"sku": "sku"},
        "event": {"key": "purchase", "time": "at", "revenue": "amount", "revenue_unit": "dollars", "entity_id": 77},
    }
    return sync(**{**base, **overrides})


def destination(**config: Any) -> OptimizelyDestination:
    return OptimizelyDestination("optimizely", OptimizelyConfig.model_validate(
        {"type": "optimizely", "token": "tok-secret", "project_id": PROJECT, "account_id": 2000, **config}
    ))


Handler = Callable[[httpx.Request], httpx.Response]


def run_writer(
    sync_config: SyncConfig, chunks: list[list[DeltaRow]], handler: Handler, state: MemoryState | None = None, **config: Any
) -> tuple[list[ChunkResult], list[httpx.Request], Writer]:
    """prepare() and write() each chunk through MockTransport; the results and every request."""
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        request.read()
        seen.append(request)
        return handler(request)

    dest = destination(**{"base_url": "https://api.test/v2", "events_url": "https://logx.test/v1/events", "max_retries": 0,
                           "requests_per_second": 1000, **config})
    transport = httpx.MockTransport(record)

    async def go() -> tuple[list[ChunkResult], Writer]:
        async with DeliveryClient(dest.delivery_settings(), transport=transport) as client:
            writer = dest.writer(sync_config, client)
            writer.state = state or MemoryState()
            writer.transport = transport  # type: ignore[attr-defined]  # only the event writer reads it
            await writer.prepare()
            return [await writer.write(chunk) for chunk in chunks], writer

    results, writer = asyncio.run(go())
    return results, seen, writer


def calls(requests: list[httpx.Request]) -> list[tuple[str, str, Any]]:
    return [(r.method, str(r.url.copy_with(query=None)), orjson.loads(r.content) if r.content else None) for r in requests]


def rest_handler(lists: list[dict[str, Any]] | None = None, patch_status: int = 200) -> Handler:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json=lists or [])
        if request.method == "POST":
            return httpx.Response(201, json={"id": 501, **orjson.loads(request.content)})
        if patch_status >= 400:
            return httpx.Response(patch_status, json={"code": "BAD_REQUEST", "message": "nope", "uuid": "x"})
        return httpx.Response(200, json={"id": 501})
    return handle


# --- golden request bodies (payload builders) ------------------------------------------------
def test_list_attribute_body_golden() -> None:
    spec = OptimizelyAudience(list_attribute="retl_vip", key_field="uid", description="VIPs")
    body = payload.list_attribute_body(spec, PROJECT, ["u1", "u2"])
    assert dumps(body) == (
        b'{"project_id":1000,"name":"retl_vip","key_field":"uid","list_type":"cookies",'
        b'"description":"VIPs","list_content":"u1,u2"}'
    )
    assert "list_content" not in payload.list_attribute_body(spec, PROJECT, None)
    assert payload.list_attribute_body(spec, PROJECT, [])["list_content"] == ""


def test_list_values_refuse_emails_unless_allowed_and_leaving_is_always_allowed() -> None:
    member, problem = payload.list_member("bob@example.com", column="user_id", joining=True, allow_pii=False)
    assert member is None and problem is not None
    assert "e-mail" in problem and "allow_pii" in problem and "user_id" in problem
    assert payload.list_member("bob@example.com", column="user_id", joining=True, allow_pii=True) == ("bob@example.com", None)
    assert payload.list_member("bob@example.com", column="user_id", joining=False, allow_pii=False) == ("bob@example.com", None)
    assert payload.list_member(42, column="user_id", joining=True, allow_pii=False) == ("42", None)
    assert payload.list_member("user@42", column="user_id", joining=True, allow_pii=False) == ("user@42", None)


@pytest.mark.parametrize(("value", "fragment"), [
    (None, "is empty"), ("", "is empty"), ("a,b", "comma"), (" a", "whitespace"),
])
def test_list_values_that_would_corrupt_list_content_are_rejected(value: Any, fragment: str) -> None:
    member, problem = payload.list_member(value, column="user_id", joining=True, allow_pii=False)
    assert member is None and problem is not None and fragment in problem


def test_conversion_golden() -> None:
    s = event_sync(fields={"sku": "sku", "qty": "qty", "gift": "gift"})
    spec = OptimizelyEvent.model_validate(s.event)
    row = DeltaRow(1, "track", {"order_id": "o1", "user_id": "u1", "at": datetime(2024, 11, 4, 17, 49, 23),
                                "amount": 19.99, "sku": "CAM-1", "qty": Decimal("2"), "gift": None})
    visitor, problem = payload.conversion(s, spec, "77", row)
    assert problem is None
    assert dumps(visitor) == (
        b'{"visitor_id":"u1","attributes":[],"snapshots":[{"decisions":[],"events":[{"entity_id":"77","key":"purchase",'
        b'"timestamp":1730742563000,"uuid":"' + payload.event_uuid("orders", ["o1"]).encode() + b'","revenue":1999,'
        b'"tags":{"sku":"CAM-1","qty":2.0}}]}]}'
    )
    head = payload.envelope(2000, PROJECT, "9.9")
    assert head == {"account_id": "2000", "project_id": "1000", "anonymize_ip": True, "client_name": "reverse_etl",
                    "client_version": "9.9", "enrich_decisions": True}


def test_event_uuid_is_fixed_by_sync_and_key() -> None:
    first = payload.event_uuid("orders", ["o1"])
    assert first == payload.event_uuid("orders", ["o1"])
    # Pinned: a different uuid for the same event after an upgrade would store it twice.
    assert first == "1b8f1a94-20eb-5ca2-94e9-ab8a6c9a153f"
    assert len({first, payload.event_uuid("orders", ["o2"]), payload.event_uuid("other", ["o1"]),
                payload.event_uuid("orders", ["o", "1"])}) == 4


@pytest.mark.parametrize(("value", "unit", "cents"), [
    (1999, "cents", 1999), (Decimal("1999.0"), "cents", 1999), (19.99, "dollars", 1999),
    (Decimal("0.125"), "dollars", 13), (1.005, "dollars", 101), (-5, "dollars", -500), ("12.30", "dollars", 1230),
])
def test_revenue_becomes_integer_cents(value: Any, unit: str, cents: int) -> None:
    assert payload.revenue_cents(value, unit) == cents


@pytest.mark.parametrize("value", [12.5, True, "abc", float("nan")])
def test_revenue_that_is_not_whole_cents_is_refused(value: Any) -> None:
    with pytest.raises(ValueError):
        payload.revenue_cents(value, "cents")


@pytest.mark.parametrize(("value", "ms"), [
    (datetime(2024, 1, 1), 1704067200000),
    (datetime(2024, 1, 1, 1, tzinfo=timezone(timedelta(hours=1))), 1704067200000),
    (date(2024, 1, 1), 1704067200000),
    ("2024-01-01T00:00:00Z", 1704067200000),
    (1704067200, 1704067200000),
    (1704067200123, 1704067200123),
    (datetime(2024, 1, 1, 0, 0, 0, 999_999, tzinfo=UTC), 1704067200999),
])
def test_event_time_is_epoch_milliseconds(value: Any, ms: int) -> None:
    assert payload.timestamp_ms(value) == ms


def test_pack_keeps_batches_under_the_count_and_byte_limits() -> None:
    head = payload.envelope(2000, PROJECT, "1")
    visitors = [(i, {"visitor_id": f"v{i}", "pad": "x" * 100}) for i in range(1, 11)]
    batches, rejected = payload.pack(visitors, head, max_count=4)
    assert [len(b) for b in batches] == [4, 4, 2] and not rejected
    limit = len(dumps({**head, "visitors": [v for _, v in visitors[:3]]}))
    batches, _ = payload.pack(visitors, head, max_count=100, max_bytes=limit)
    assert [len(b) for b in batches] == [3, 3, 3, 1]
    assert all(len(dumps({**head, "visitors": [v for _, v in b]})) <= limit for b in batches)
    big = [(1, {"visitor_id": "v", "pad": "x" * 500}), (2, {"visitor_id": "w"})]
    batches, rejected = payload.pack(big, head, max_count=100, max_bytes=300)
    assert list(rejected) == [1] and "request limit" in rejected[1] and batches == [[big[1]]]


def test_definition_bodies_golden() -> None:
    audiences = sync(type="records", mode="upsert", audience=None, object="audiences", primary_key="id",
                     identifiers={"name": "name"}, fields={"conditions": "cond", "description": "about"})
    values = {"id": 1, "name": "Pro users", "cond": ["and", {"type": "custom_attribute", "name": "plan", "value": "pro"}],
              "about": None}
    body, problem = payload.definition_body(OBJECTS["audiences"], audiences, values, project_id=PROJECT, create=True)
    assert problem is None
    assert dumps(body) == (
        b'{"name":"Pro users","conditions":"[\\"and\\",{\\"type\\":\\"custom_attribute\\",\\"name\\":\\"plan\\",'
        b'\\"value\\":\\"pro\\"}]","description":"","project_id":1000}'
    )
    body, _ = payload.definition_body(OBJECTS["audiences"], audiences, {**values, "cond": '["or"]'},
                                      project_id=PROJECT, create=False, restore=True)
    assert body == {"name": "Pro users", "conditions": '["or"]', "description": "", "archived": False}
    _, problem = payload.definition_body(OBJECTS["audiences"], audiences, {**values, "cond": "[not json"}, project_id=PROJECT, create=True)
    assert problem is not None and "not valid JSON" in problem
    events = sync(type="records", audience=None, object="custom_events", primary_key="k", identifiers={"key": "k"},
                  fields={"name": "n", "category": "c"})
    body, _ = payload.definition_body(OBJECTS["custom_events"], events, {"k": "signup", "n": "Sign up", "c": None},
                                      project_id=PROJECT, create=True)
    assert body == {"key": "signup", "name": "Sign up", "event_type": "custom"}


# --- configuration checks --------------------------------------------------------------------
def test_registered_and_checks_syncs_with_clear_problems() -> None:
    assert destination_class("optimizely") is OptimizelyDestination
    dest = destination()
    assert dest.check_sync(sync()) == []
    assert any("PII" in p for p in dest.check_sync(sync(identifiers={"email": "email"}, primary_key="email")))
    assert dest.check_sync(sync(identifiers={"email": "email"}, primary_key="email",
                                audience={"list_attribute": "l", "key_field": "k", "allow_pii": True})) == []
    assert any("primary_key" in p for p in dest.check_sync(sync(primary_key="id")))
    assert any("list_attribute" in p for p in dest.check_sync(sync(audience={"list_attribute": "bad name", "key_field": "k"})))
    records = sync(type="records", mode="upsert", audience=None, object="widgets")
    assert any("object:" in p for p in dest.check_sync(records))
    records = sync(type="records", mode="upsert", audience=None, object="audiences", identifiers={"name": "n"},
                   primary_key="n", fields={"description": "d"})
    assert any("conditions" in p for p in dest.check_sync(records))
    assert any("visitor_id" in p for p in dest.check_sync(event_sync(identifiers={"user_id": "user_id"})))
    assert dest.extra_columns(event_sync()) == ["at", "amount"]
    with pytest.raises(ValueError, match="token"):
        OptimizelyConfig.model_validate({"type": "optimizely", "project_id": 1, "account_id": 2})
    assert OptimizelyConfig.model_validate({"type": "optimizely", "sandbox": True, "project_id": 1, "account_id": 2,
                                            "region": "eu"}).event_api_url == "https://eu.logx.optimizely.com/v1/events"


# --- writers through MockTransport -----------------------------------------------------------
def test_list_writer_creates_the_list_then_uploads_the_whole_membership_per_chunk() -> None:
    state = MemoryState()
    chunks = [
        [DeltaRow(1, "join", {"user_id": "u1"}), DeltaRow(2, "join", {"user_id": "u2"}),
         DeltaRow(3, "join", {"user_id": "bob@example.com"})],
        [DeltaRow(4, "leave", {"user_id": "u1"}), DeltaRow(5, "join", {"user_id": "u3"})],
    ]
    results, seen, _ = run_writer(sync(), chunks, rest_handler(), state)
    assert calls(seen) == [
        ("GET", "https://api.test/v2/list_attributes", None),
        ("POST", "https://api.test/v2/list_attributes",
         {"project_id": 1000, "name": "retl_vip", "key_field": "uid", "list_type": "cookies"}),
        ("PATCH", "https://api.test/v2/list_attributes/501",
         {"project_id": 1000, "name": "retl_vip", "key_field": "uid", "list_type": "cookies", "list_content": "u1,u2"}),
        ("PATCH", "https://api.test/v2/list_attributes/501",
         {"project_id": 1000, "name": "retl_vip", "key_field": "uid", "list_type": "cookies", "list_content": "u2,u3"}),
    ]
    assert seen[0].url.params["project_id"] == "1000" and seen[0].url.params["per_page"] == "100"
    assert all(r.headers["authorization"] == "Bearer tok-secret" for r in seen)
    assert results[0].accepted == [1, 2] and list(results[0].rejected) == [3]
    assert results[1].accepted == [4, 5]
    assert orjson.loads(state.values["optimizely/api.test/1000/list_attributes/retl_vip"]) == {"id": 501, "members": ["u2", "u3"]}


def test_list_writer_failed_upload_accepts_nothing_and_the_next_upload_is_right() -> None:
    status = {"patch": 503}

    def handle(request: httpx.Request) -> httpx.Response:
        if request.method == "PATCH" and status["patch"] >= 400:
            status["patch"] = 200
            return httpx.Response(503, json={"code": "SERVICE_UNAVAILABLE", "message": "down", "uuid": "x"})
        return rest_handler([{"id": 9, "name": "retl_vip", "project_id": PROJECT, "archived": False}])(request)

    state = MemoryState({"optimizely/api.test/1000/list_attributes/retl_vip": '{"id": 9, "members": ["a", "b"]}'})
    chunks = [[DeltaRow(1, "leave", {"user_id": "a"})], [DeltaRow(2, "join", {"user_id": "c"})]]
    results, seen, _ = run_writer(sync(), chunks, handle, state)
    assert results[0].accepted == [] and list(results[0].failed) == [1]
    patches = [orjson.loads(r.content)["list_content"] for r in seen if r.method == "PATCH"]
    assert patches == ["b", "a,b,c"]  # the failed leave is not applied to the next upload
    assert [r.method for r in seen[:1]] == ["GET"] and seen[0].url.path == "/v2/list_attributes/9"
    assert orjson.loads(state.values["optimizely/api.test/1000/list_attributes/retl_vip"])["members"] == ["a", "b", "c"]


def test_list_writer_starts_from_the_snapshot_when_it_has_no_record() -> None:
    state = MemoryState(snapshot_rows=[{"user_id": "s1"}, {"user_id": "s2"}])
    results, seen, _ = run_writer(sync(mode="add"), [[DeltaRow(1, "join", {"user_id": "n1"})]], rest_handler(), state)
    assert results[0].accepted == [1]
    assert orjson.loads(seen[-1].content)["list_content"] == "s1,s2,n1"


def test_rest_429_is_backed_off_and_retried() -> None:
    answers = iter([httpx.Response(429, headers={"Retry-After": "0"}, json={"code": "TOO_MANY_REQUESTS", "message": "slow"})])

    def handle(request: httpx.Request) -> httpx.Response:
        return next(answers, None) or rest_handler()(request)

    results, seen, _ = run_writer(sync(), [[DeltaRow(1, "join", {"user_id": "u1"})]], handle, max_retries=2)
    assert results[0].accepted == [1]
    assert [r.method for r in seen] == ["GET", "GET", "POST", "PATCH"]


def test_event_writer_never_sends_the_token_and_isolates_a_bad_event() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content)
        if any(v["visitor_id"] == "bad" for v in body["visitors"]):
            return httpx.Response(400, json={"error": "visitors[0].visitor_id is bad"})
        return httpx.Response(204)

    at = datetime(2025, 1, 1)
    rows = [DeltaRow(i, "track", {"order_id": f"o{i}", "user_id": "bad" if i == 3 else f"u{i}", "at": at, "amount": 1.5, "sku": "s"})
            for i in range(1, 6)]
    rows.append(DeltaRow(6, "track", {"order_id": "o6", "user_id": "u6", "at": None, "amount": 1, "sku": "s"}))
    results, seen, _ = run_writer(event_sync(), [rows], handle)
    assert sorted(results[0].accepted) == [1, 2, 4, 5]
    assert set(results[0].rejected) == {3, 6}
    assert "visitor_id is bad" in results[0].rejected[3] and "at" in results[0].rejected[6]
    assert all(r.url == "https://logx.test/v1/events" and "authorization" not in r.headers for r in seen)
    first = orjson.loads(seen[0].content)
    assert [v["visitor_id"] for v in first["visitors"]] == ["u1", "u2", "bad", "u4", "u5"]
    assert first["visitors"][0]["snapshots"][0]["events"][0]["revenue"] == 150


def test_event_writer_looks_the_entity_id_up_by_key_and_remembers_it() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2/events":
            return httpx.Response(200, json=[{"id": 5, "key": "signup", "project_id": PROJECT, "archived": False},
                                             {"id": 6, "key": "purchase", "project_id": PROJECT, "archived": False}])
        return httpx.Response(204)

    state = MemoryState()
    s = event_sync(event={"key": "purchase", "time": "at"})
    row = DeltaRow(1, "track", {"order_id": "o1", "user_id": "u1", "at": datetime(2025, 1, 1), "sku": None})
    results, seen, _ = run_writer(s, [[row]], handle, state)
    assert results[0].accepted == [1]
    assert orjson.loads(seen[-1].content)["visitors"][0]["snapshots"][0]["events"][0]["entity_id"] == "6"
    assert state.values["optimizely/api.test/1000/custom_events/key/purchase"] == "6"


# --- end to end against the strict emulator --------------------------------------------------
@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with SandboxServer(OptimizelyEmulator(projects={PROJECT: "web"}, require_known_events=True)) as served:
        yield served


@pytest.fixture
def emulator(server: SandboxServer) -> OptimizelyEmulator:
    emu = server.emulator
    assert isinstance(emu, OptimizelyEmulator)
    emu.reset()
    emu.faults = Faults()
    emu.request_log.clear()
    return emu


def project(root: Path, server: SandboxServer, models: dict[str, str], syncs: list[dict[str, Any]]) -> Path:
    dest = {"type": "optimizely", "token": "sandbox-key", "project_id": PROJECT, "account_id": 2000,
            "base_url": f"{server.url}/v2", "events_url": f"{server.url}/v1/events", "requests_per_second": 1000}
    return write_project(root, models=models, syncs={"optimizely": syncs}, destinations={"optimizely": dest})


def members_sql(ids: list[str]) -> str:
    return values_sql(["user_id"], [(i,) for i in ids])


def list_sync(name: str, model: str, mode: str, **audience: Any) -> dict[str, Any]:
    return {"name": name, "model": model, "destination": "optimizely", "type": "audience", "mode": mode,
            "primary_key": "user_id", "identifiers": {"user_id": "user_id"},
            "audience": {"list_attribute": "retl_vip", "key_field": "user_id", **audience}}


def run(root: Path, *selectors: str, **options: Any) -> list[reverse_etl.SyncRun]:
    return reverse_etl.sync(root, list(selectors) or None, **options).runs


def test_mirror_list_equals_the_model_after_each_run(tmp_path: Path, server: SandboxServer, emulator: OptimizelyEmulator) -> None:
    root = project(tmp_path, server, {"vip": members_sql(["u1", "u2", "u3"])}, [list_sync("vip", "vip", "mirror")])
    [first] = run(root)
    assert (first.status, first.sent) == ("success", 3)
    assert sorted(emulator.list_members("retl_vip")) == ["u1", "u2", "u3"]
    set_model(root, "vip", members_sql(["u2", "u3", "u4"]))
    [second] = run(root)
    assert (second.status, second.added, second.removed, second.sent) == ("success", 1, 1, 2)
    assert sorted(emulator.list_members("retl_vip")) == ["u2", "u3", "u4"]
    assert emulator.requests_to(f"/v2/list_attributes/{emulator.list_attribute('retl_vip')['id']}", "PATCH") == 2  # type: ignore[index]
    assert emulator.requests_to("/v2/list_attributes", "POST") == 1
    assert run(root)[0].sent == 0  # nothing changed, nothing sent


def test_add_and_remove_syncs_share_one_list(tmp_path: Path, server: SandboxServer, emulator: OptimizelyEmulator) -> None:
    root = project(
        tmp_path, server,
        {"buyers": members_sql(["u1", "u2", "u3"]), "optouts": members_sql(["u2"])},
        [list_sync("add_buyers", "buyers", "add"), list_sync("drop_optouts", "optouts", "remove")],
    )
    assert [r.status for r in run(root, "add_buyers")] == ["success"]
    assert sorted(emulator.list_members("retl_vip")) == ["u1", "u2", "u3"]
    assert [r.status for r in run(root, "drop_optouts")] == ["success"]
    assert sorted(emulator.list_members("retl_vip")) == ["u1", "u3"]
    # add never removes: u1 stays after leaving the model; u2 stays out (as with an add/remove API).
    set_model(root, "buyers", members_sql(["u2", "u3", "u4"]))
    set_model(root, "optouts", members_sql(["u2", "u3"]))
    assert [r.status for r in run(root)] == ["success", "success"]
    assert sorted(emulator.list_members("retl_vip")) == ["u1", "u4"]


def test_remove_sync_refuses_a_list_whose_members_it_cannot_know(tmp_path: Path, server: SandboxServer, emulator: OptimizelyEmulator) -> None:
    created = httpx.post(f"{server.url}/v2/list_attributes", headers={"Authorization": "Bearer sandbox-key"}, json={
        "project_id": PROJECT, "name": "retl_vip", "key_field": "user_id", "list_type": "cookies", "list_content": "x,y,z"})
    assert created.status_code == 201
    root = project(tmp_path, server, {"optouts": members_sql(["y"])}, [list_sync("drop", "optouts", "remove")])
    [result] = run(root)
    assert result.status == "error" and result.error is not None and "no record of its members" in result.error
    assert emulator.list_members("retl_vip") == ["x", "y", "z"]


def test_failed_upload_keeps_the_snapshot_and_the_next_run_uploads_the_full_list(
    tmp_path: Path, server: SandboxServer, emulator: OptimizelyEmulator
) -> None:
    root = project(tmp_path, server, {"vip": members_sql(["u1", "u2"])}, [list_sync("vip", "vip", "mirror")])
    run(root)
    set_model(root, "vip", members_sql(["u2", "u3"]))
    emulator.faults = Faults(reject_rate=1.0)  # every REST write answers 400, unapplied
    [failed] = run(root)
    assert (failed.status, failed.sent, failed.rejected) == ("partial", 0, 2)
    assert "injected" in failed.rejected_sample[0]["reason"]
    assert sorted(emulator.list_members("retl_vip")) == ["u1", "u2"]
    [plan] = reverse_etl.diff(root, ["vip"]).plans
    assert (plan.added, plan.removed, plan.snapshot_rows) == (1, 1, 2)  # the snapshot did not move
    emulator.faults = Faults()
    [ok] = run(root)
    assert (ok.status, ok.sent) == ("success", 2)
    assert sorted(emulator.list_members("retl_vip")) == ["u2", "u3"]


def test_pii_values_are_refused_unless_allowed(tmp_path: Path, server: SandboxServer, emulator: OptimizelyEmulator) -> None:
    root = project(tmp_path, server, {"vip": members_sql(["u1", "bob@example.com"])}, [list_sync("vip", "vip", "mirror")])
    [result] = run(root)
    assert (result.status, result.sent, result.rejected) == ("partial", 1, 1)
    assert result.rejected_sample[0]["key"] == "bob@example.com" and "allow_pii" in result.rejected_sample[0]["reason"]
    assert emulator.list_members("retl_vip") == ["u1"]
    project(tmp_path, server, {"vip": members_sql(["u1", "bob@example.com"])}, [list_sync("vip", "vip", "mirror", allow_pii=True)])
    assert run(root)[0].status == "success"
    assert sorted(emulator.list_members("retl_vip")) == ["bob@example.com", "u1"]
    email_sync = {**list_sync("vip", "vip", "mirror"), "primary_key": "email", "identifiers": {"email": "email"}}
    project(tmp_path, server, {"vip": values_sql(["email"], [("a@b.io",)])}, [email_sync])
    with pytest.raises(ConfigError, match="PII"):
        run(root)


def test_definitions_are_created_updated_and_archived(tmp_path: Path, server: SandboxServer, emulator: OptimizelyEmulator) -> None:
    attrs = {"name": "attrs", "model": "attrs", "destination": "optimizely", "type": "records", "mode": "mirror",
             "object": "attributes", "primary_key": "k", "identifiers": {"key": "k"}, "fields": {"name": "n", "description": "d"}}
    auds = {"name": "auds", "model": "auds", "destination": "optimizely", "type": "records", "mode": "mirror",
            "object": "audiences", "primary_key": "id", "identifiers": {"name": "n"}, "fields": {"conditions": "c"}}
    events = {"name": "evs", "model": "evs", "destination": "optimizely", "type": "records", "mode": "upsert",
              "object": "custom_events", "primary_key": "k", "identifiers": {"key": "k"}, "fields": {"category": "cat"}}
    cond = '["and", {"type": "custom_attribute", "name": "plan", "value": "pro"}]'
    root = project(tmp_path, server, {
        "attrs": values_sql(["k", "n", "d"], [("plan", "Plan", "the plan"), ("country", "Country", None)]),
        "auds": values_sql(["id", "n", "c"], [(1, "Pro users", cond)]),
        "evs": values_sql(["k", "cat"], [("signup", "sign_up")]),
    }, [attrs, auds, events])
    assert [r.status for r in run(root)] == ["success"] * 3

    def live(objs: list[dict[str, Any]], field: str) -> dict[str, dict[str, Any]]:
        return {o[field]: o for o in objs if not o["archived"]}

    first = live(emulator.attributes(), "key")
    assert {k: (o["name"], o["description"]) for k, o in first.items()} == {"plan": ("Plan", "the plan"), "country": ("Country", "")}
    assert [(a["name"], a["conditions"]) for a in emulator.audiences()] == [("Pro users", cond)]
    assert [(e["key"], e["category"]) for e in emulator.custom_events()] == [("signup", "sign_up")]

    set_model(root, "attrs", values_sql(["k", "n", "d"], [("plan", "Plan name", "the plan"), ("tier", "Tier", "t")]))
    set_model(root, "auds", values_sql(["id", "n", "c"], [(1, "Pro customers", cond)]))  # renamed: same audience
    assert [r.status for r in run(root)] == ["success"] * 3
    assert {k: o["name"] for k, o in live(emulator.attributes(), "key").items()} == {"plan": "Plan name", "tier": "Tier"}
    assert live(emulator.attributes(), "key")["plan"]["id"] == first["plan"]["id"]
    assert [o["archived"] for o in emulator.attributes() if o["key"] == "country"] == [True]
    assert [(a["name"], a["archived"]) for a in emulator.audiences()] == [("Pro customers", False)]

    set_model(root, "attrs", values_sql(["k", "n", "d"], [("plan", "Plan name", "the plan"), ("tier", "Tier", "t"),
                                                          ("country", "Country", None)]))
    assert run(root, "attrs")[0].status == "success"
    restored = [o for o in emulator.attributes() if o["key"] == "country"]
    assert [(o["id"], o["archived"]) for o in restored] == [(first["country"]["id"], False)]  # un-archived, not a twin


def test_events_are_stored_once_even_on_a_full_resync(tmp_path: Path, server: SandboxServer, emulator: OptimizelyEmulator) -> None:
    made = httpx.post(f"{server.url}/v2/projects/{PROJECT}/custom_events", headers={"Authorization": "Bearer sandbox-key"},
                      json={"key": "purchase", "event_type": "custom"})
    entity_id = str(made.json()["id"])
    orders = {"name": "orders", "model": "orders", "destination": "optimizely", "type": "events", "mode": "insert",
              "primary_key": "order_id", "identifiers": {"visitor_id": "user_id"}, "fields": {"sku": "sku"},
              "event": {"key": "purchase", "time": "placed_at", "revenue": "cents"}}
    rows = [("o1", "u1", "2025-03-01 10:00:00", 1999, "A"), ("o2", "u2", "2025-03-02 11:30:00", 500, "B"),
            ("o3", "u1", "2025-03-03 12:00:00", 12000, None)]
    sql = "SELECT order_id, user_id, CAST(placed AS TIMESTAMP) AS placed_at, cents, sku FROM ({}) AS r"
    root = project(tmp_path, server, {"orders": sql.format(values_sql(["order_id", "user_id", "placed", "cents", "sku"], rows))}, [orders])
    assert run(root)[0].sent == 3

    def stored() -> list[tuple[Any, ...]]:
        return sorted((e["visitor_id"], e["entity_id"], e["timestamp"], e.get("revenue"), e.get("tags")) for e in emulator.conversion_events())

    expected = [("u1", entity_id, 1740823200000, 1999, {"sku": "A"}), ("u1", entity_id, 1741003200000, 12000, None),
                ("u2", entity_id, 1740915000000, 500, {"sku": "B"})]
    assert stored() == expected
    [again] = run(root, full_resync=True)
    assert (again.status, again.sent) == ("success", 3)
    assert stored() == expected and emulator.intake.duplicates_ignored == 3
    rows.append(("o4", "u3", "2025-03-04 09:00:00", 100, "C"))
    set_model(root, "orders", sql.format(values_sql(["order_id", "user_id", "placed", "cents", "sku"], rows)))
    assert run(root)[0].sent == 1
    assert len(emulator.conversion_events()) == 4


def test_events_need_a_known_custom_event(tmp_path: Path, server: SandboxServer, emulator: OptimizelyEmulator) -> None:
    event: dict[str, Any] = {"key": "purchase", "time": "placed_at"}
    orders: dict[str, Any] = {"name": "orders", "model": "orders", "destination": "optimizely", "type": "events",
                              "mode": "insert", "primary_key": "order_id", "identifiers": {"visitor_id": "user_id"}, "event": event}
    model = "SELECT 'o1' AS order_id, 'u1' AS user_id, TIMESTAMP '2025-01-01 00:00:00' AS placed_at"
    root = project(tmp_path, server, {"orders": model}, [orders])
    [result] = run(root)
    assert result.status == "error" and result.error is not None and "create_if_missing" in result.error
    assert emulator.conversion_events() == []
    project(tmp_path, server, {"orders": model}, [{**orders, "event": {**event, "create_if_missing": True}}])
    assert run(root)[0].status == "success"
    assert [e["key"] for e in emulator.custom_events()] == ["purchase"] and len(emulator.conversion_events()) == 1


def test_example_project_syncs_optimizely_in_the_sandbox(tmp_path: Path) -> None:
    for part in ("models", "data"):
        (tmp_path / part).symlink_to(REPO / part)
    (tmp_path / "syncs").mkdir()
    ours = [s for f in ("audiences", "events") for s in yaml.safe_load((REPO / "syncs" / f"{f}.yml").read_text())["syncs"]
            if s["destination"] == "optimizely"]
    (tmp_path / "syncs" / "optimizely.yml").write_text(yaml.safe_dump({"syncs": ours}, sort_keys=False))
    (tmp_path / "profiles.yml").write_text(
        "target: dev\ntargets:\n  dev:\n    destinations:\n"
        "      optimizely: {type: optimizely, sandbox: true, project_id: 1000, account_id: 2000, requests_per_second: 1000}\n"
    )
    result = reverse_etl.sync(tmp_path, ["optimizely"])
    assert [(r.sync, r.status) for r in result.runs] == [("optimizely_high_value", "success"), ("optimizely_purchases", "success")]
    state = reverse_etl.api.sandbox_state(tmp_path, "optimizely")
    assert state["summary"]["list_attributes"][0]["members"] == result.runs[0].sent > 0
    assert state["summary"]["conversion_events"] == result.runs[1].sent > 0
    assert all(isinstance(e["revenue"], int) for e in state["state"]["conversion_events"])
