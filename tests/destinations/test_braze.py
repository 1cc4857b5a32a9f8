"""Braze destination: golden request bodies for every sync type, client-side validation, batching
and the mapping of Braze's answers to per-row outcomes (httpx.MockTransport, no server)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import httpx
import orjson
import pytest

from reverse_etl.config.syncs import SyncConfig
from reverse_etl.delivery.client import DeliveryClient
from reverse_etl.destinations.base import ChunkResult, DeltaRow
from reverse_etl.destinations.braze.config import INSTANCES, BrazeConfig
from reverse_etl.destinations.braze.destination import BrazeDestination
from reverse_etl.errors import TerminalError

Handler = Callable[[httpx.Request], httpx.Response]


def sync(**overrides: Any) -> SyncConfig:
    base: dict[str, Any] = {
        "name": "traits", "model": "traits", "destination": "braze", "type": "records", "mode": "upsert",
        "primary_key": "user_id", "identifiers": {"external_id": "user_id"}, "fields": {"plan": "plan", "ltv": "ltv"},
    }
    base.update(overrides)
    return SyncConfig.model_validate(base)


def audience(**overrides: Any) -> SyncConfig:
    return sync(**{"type": "audience", "mode": "mirror", "fields": {}, "audience": {"name": "vip"}, **overrides})


def events(**overrides: Any) -> SyncConfig:
    base = {"name": "orders", "type": "events", "mode": "insert", "primary_key": "order_id",
            "event": {"name": "purchase", "time": "at"}, "fields": {"amount": "amount"}}
    return sync(**{**base, **overrides})


def catalog(**overrides: Any) -> SyncConfig:
    base = {"name": "products", "primary_key": "sku", "identifiers": {"id": "sku"}, "catalog": "products",
            "fields": {"title": "title", "price": "price"}}
    return sync(**{**base, **overrides})


def destination(**config: Any) -> BrazeDestination:
    raw = {"type": "braze", "base_url": "https://braze.test", "api_key": "key-123", "max_retries": 0, **config}
    return BrazeDestination("braze", BrazeConfig.model_validate(raw))


def ok(request: httpx.Request) -> httpx.Response:
    if request.url.path.startswith("/catalogs/"):
        return httpx.Response(202, json={"message": "success"})
    return httpx.Response(201, json={"message": "success"})


def run_writer(config: SyncConfig, rows: list[DeltaRow], handler: Handler = ok, **dest: Any) -> tuple[ChunkResult, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        request.read()
        seen.append(request)
        return handler(request)

    braze = destination(**dest)

    async def go() -> ChunkResult:
        async with DeliveryClient(braze.delivery_settings(), transport=httpx.MockTransport(record)) as client:
            writer = braze.writer(config, client)
            await writer.prepare()
            result = await writer.write(rows)
            await writer.finish()
            return result

    return asyncio.run(go()), seen


def calls(seen: list[httpx.Request]) -> list[tuple[str, str, Any]]:
    return sorted(((r.method, r.url.path, orjson.loads(r.content)) for r in seen), key=lambda c: orjson.dumps(c))


def users(*values: dict[str, Any], action: str = "upsert") -> list[DeltaRow]:
    return [DeltaRow(i + 1, action, v) for i, v in enumerate(values)]


# --- golden request bodies ---------------------------------------------------------------
def test_records_upsert_body() -> None:
    rows = users({"user_id": "u1", "plan": "pro", "ltv": 10.5}, {"user_id": 7, "plan": None, "ltv": 0.0})
    result, seen = run_writer(sync(), rows)
    assert calls(seen) == [("POST", "/users/track", {"attributes": [
        {"external_id": "u1", "plan": "pro", "ltv": 10.5},
        {"external_id": "7", "plan": None, "ltv": 0.0},
    ]})]
    assert sorted(result.accepted) == [1, 2]
    assert seen[0].headers["authorization"] == "Bearer key-123"
    assert seen[0].headers["content-type"] == "application/json"


def test_records_update_body_never_creates() -> None:
    _, seen = run_writer(sync(mode="update"), users({"user_id": "u1", "plan": "pro", "ltv": 1.0}, action="update"))
    assert calls(seen) == [("POST", "/users/track", {"attributes": [
        {"external_id": "u1", "plan": "pro", "ltv": 1.0, "_update_existing_only": True},
    ]})]


def test_records_insert_body() -> None:
    _, seen = run_writer(sync(mode="insert"), users({"user_id": "u1", "plan": "pro", "ltv": 1.0}, action="insert"))
    assert calls(seen) == [("POST", "/users/track", {"attributes": [{"external_id": "u1", "plan": "pro", "ltv": 1.0}]})]


def test_records_mirror_clear_sets_every_field_to_null() -> None:
    rows = [DeltaRow(1, "remove", {"user_id": "u2", "plan": None, "ltv": None}),
            DeltaRow(2, "upsert", {"user_id": "u1", "plan": "pro", "ltv": 2.0})]
    _, seen = run_writer(sync(mode="mirror"), rows)
    assert calls(seen) == [("POST", "/users/track", {"attributes": [
        {"external_id": "u2", "plan": None, "ltv": None}, {"external_id": "u1", "plan": "pro", "ltv": 2.0},
    ]})]


def test_records_mirror_delete_calls_users_delete() -> None:
    rows = [DeltaRow(1, "remove", {"user_id": "u2", "plan": None, "ltv": None}),
            DeltaRow(2, "upsert", {"user_id": "u1", "plan": "pro", "ltv": 2.0})]
    result, seen = run_writer(sync(mode="mirror", on_remove="delete"), rows)
    assert calls(seen) == [
        ("POST", "/users/delete", {"external_ids": ["u2"]}),
        ("POST", "/users/track", {"attributes": [{"external_id": "u1", "plan": "pro", "ltv": 2.0}]}),
    ]
    assert sorted(result.accepted) == [1, 2]


def test_standard_attributes_are_written_in_braze_formats() -> None:
    config = sync(fields={"dob": "born", "country": "country", "gender": "gender", "email": "email",
                          "email_subscribe": "sub", "time_zone": "tz", "tags": "tags", "signed_up": "signed_up"})
    row = {"user_id": "u1", "born": datetime(1990, 5, 17, 23, 30), "country": "DE", "gender": "f", "email": "a@b.co",
           "sub": "opted_in", "tz": "Europe/Berlin", "tags": ["a", "b"], "signed_up": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)}
    _, seen = run_writer(config, users(row))
    assert calls(seen)[0][2] == {"attributes": [{
        "external_id": "u1", "dob": "1990-05-17", "country": "DE", "gender": "f", "email": "a@b.co",
        "email_subscribe": "opted_in", "time_zone": "Europe/Berlin", "tags": ["a", "b"],
        "signed_up": "2024-01-02T03:04:05.000000Z",
    }]}


def test_audience_boolean_body() -> None:
    rows = [DeltaRow(1, "leave", {"user_id": "u2"}), DeltaRow(2, "join", {"user_id": "u1"})]
    _, seen = run_writer(audience(), rows)
    assert calls(seen) == [("POST", "/users/track", {"attributes": [
        {"external_id": "u2", "vip": False}, {"external_id": "u1", "vip": True},
    ]})]


def test_audience_array_body() -> None:
    rows = [DeltaRow(1, "leave", {"user_id": "u2"}), DeltaRow(2, "join", {"user_id": "u1"})]
    _, seen = run_writer(audience(audience={"name": "vip", "membership": "array", "attribute": "segments"}), rows)
    assert calls(seen) == [("POST", "/users/track", {"attributes": [
        {"external_id": "u2", "segments": {"remove": ["vip"]}}, {"external_id": "u1", "segments": {"add": ["vip"]}},
    ]})]


def test_audience_subscription_group_body() -> None:
    rows = [DeltaRow(1, "leave", {"user_id": "u2"}), DeltaRow(2, "join", {"user_id": "u1"}),
            DeltaRow(3, "join", {"user_id": "u3"})]
    result, seen = run_writer(audience(audience={"subscription_group_id": "grp-1"}), rows)
    assert calls(seen) == [
        ("POST", "/v2/subscription/status/set", {"subscription_groups": [
            {"subscription_group_id": "grp-1", "subscription_state": "subscribed", "external_ids": ["u1", "u3"]}]}),
        ("POST", "/v2/subscription/status/set", {"subscription_groups": [
            {"subscription_group_id": "grp-1", "subscription_state": "unsubscribed", "external_ids": ["u2"]}]}),
    ]
    assert sorted(result.accepted) == [1, 2, 3]


def test_subscription_group_by_email() -> None:
    config = audience(primary_key="email", identifiers={"email": "email"}, audience={"subscription_group_id": "g"})
    _, seen = run_writer(config, [DeltaRow(1, "join", {"email": "a@b.co"})])
    assert calls(seen)[0][2]["subscription_groups"][0]["emails"] == ["a@b.co"]


def test_events_body_with_times_in_utc() -> None:
    rows = [
        DeltaRow(1, "track", {"order_id": "o1", "user_id": "u1", "at": datetime(2026, 1, 1, 10, 0), "amount": 5.0}),
        DeltaRow(2, "track", {"order_id": "o2", "user_id": "u1",
                              "at": datetime(2026, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=2))), "amount": None}),
    ]
    _, seen = run_writer(events(), rows)
    assert calls(seen) == [("POST", "/users/track", {"events": [
        {"external_id": "u1", "name": "purchase", "time": "2026-01-01T10:00:00.000000Z", "properties": {"amount": 5.0}},
        {"external_id": "u1", "name": "purchase", "time": "2026-01-01T10:00:00.000000Z", "properties": {"amount": None}},
    ]})]


def test_events_name_from_a_column_and_date_and_text_times() -> None:
    config = events(event={"name": {"column": "kind"}, "time": "at"}, fields={})
    rows = [DeltaRow(1, "track", {"order_id": "o1", "user_id": "u1", "kind": "signup", "at": date(2026, 3, 1)})]
    _, seen = run_writer(config, rows)
    assert calls(seen)[0][2] == {"events": [{"external_id": "u1", "name": "signup", "time": "2026-03-01T00:00:00.000000Z"}]}
    rows = [DeltaRow(1, "track", {"order_id": "o1", "user_id": "u1", "kind": "login", "at": "2026-03-01T08:00:00+01:00"})]
    _, seen = run_writer(config, rows)
    assert calls(seen)[0][2]["events"][0]["time"] == "2026-03-01T08:00:00+01:00"


def test_catalog_bodies_for_each_mode() -> None:
    item = {"sku": "SKU-1", "title": "Cable", "price": 9.99}
    _, seen = run_writer(catalog(), [DeltaRow(1, "upsert", item)])
    assert calls(seen) == [("PUT", "/catalogs/products/items", {"items": [{"id": "SKU-1", "title": "Cable", "price": 9.99}]})]
    _, seen = run_writer(catalog(mode="insert"), [DeltaRow(1, "insert", item)])
    assert calls(seen)[0][:2] == ("POST", "/catalogs/products/items")
    _, seen = run_writer(catalog(mode="update"), [DeltaRow(1, "update", item)])
    assert calls(seen)[0][:2] == ("PATCH", "/catalogs/products/items")
    rows = [DeltaRow(1, "remove", {"sku": "OLD", "title": None, "price": None}), DeltaRow(2, "upsert", item)]
    _, seen = run_writer(catalog(mode="mirror"), rows)
    assert calls(seen) == [
        ("DELETE", "/catalogs/products/items", {"items": [{"id": "OLD"}]}),
        ("PUT", "/catalogs/products/items", {"items": [{"id": "SKU-1", "title": "Cable", "price": 9.99}]}),
    ]


# --- batching ------------------------------------------------------------------------------
def sizes(seen: list[httpx.Request], key: str) -> list[int]:
    out = []
    for r in seen:
        body = orjson.loads(r.content)
        value = body["subscription_groups"][0]["external_ids"] if key == "subscription_groups" else body[key]
        out.append(len(value))
    return sorted(out, reverse=True)


def test_batches_of_75_per_array_and_50_combined() -> None:
    rows = users(*({"user_id": f"u{i}", "plan": "p", "ltv": 1.0} for i in range(160)))
    result, seen = run_writer(sync(), rows)
    assert sizes(seen, "attributes") == [75, 75, 10] and len(result.accepted) == 160
    _, seen = run_writer(sync(), rows, max_objects_combined=50)
    assert sizes(seen, "attributes") == [50, 50, 50, 10]
    _, seen = run_writer(sync(), rows, batch_size=20)
    assert sizes(seen, "attributes") == [20] * 8


def test_id_lists_and_catalog_items_go_50_at_a_time() -> None:
    removed = [DeltaRow(i + 1, "remove", {"user_id": f"u{i}", "plan": None, "ltv": None}) for i in range(120)]
    _, seen = run_writer(sync(mode="mirror", on_remove="delete"), removed)
    assert sizes(seen, "external_ids") == [50, 50, 20]
    joins = [DeltaRow(i + 1, "join", {"user_id": f"u{i}"}) for i in range(120)]
    _, seen = run_writer(audience(audience={"subscription_group_id": "g"}), joins)
    assert sizes(seen, "subscription_groups") == [50, 50, 20]
    items = [DeltaRow(i + 1, "upsert", {"sku": f"s{i}", "title": "t", "price": 1.0}) for i in range(120)]
    _, seen = run_writer(catalog(), items)
    assert sizes(seen, "items") == [50, 50, 20]


def test_a_batch_over_4_mb_is_split_and_a_huge_object_rejected() -> None:
    config = sync(fields={f"f{i}": f"c{i}" for i in range(30)})
    big = {f"c{i}": "x" * 250 for i in range(30)}  # ~8 KB per object: 75 of them fit easily
    rows = users(*({"user_id": f"u{n}", **big} for n in range(75)))
    result, seen = run_writer(config, rows)
    assert len(seen) == 1 and len(result.accepted) == 75
    config = sync(fields={"tags": "tags"})
    half = [f"{n:0250d}" for n in range(9000)]  # ~2.3 MB of array items: two do not fit one request
    rows = users({"user_id": "a", "tags": half}, {"user_id": "b", "tags": half}, {"user_id": "c", "tags": ["x"]},
                 {"user_id": "d", "tags": half * 2})
    result, seen = run_writer(config, rows)
    assert len(seen) == 2 and all(len(r.content) <= 4 * 2**20 for r in seen)
    assert sorted(result.accepted) == [1, 2, 3]
    assert "over Braze's 4 MB request limit" in result.rejected[4]


# --- client-side validation ----------------------------------------------------------------
BAD_ATTRIBUTES = [
    ("dob", "1990-02-30", "dob must be a date written YYYY-MM-DD"),
    ("dob", "17/05/1990", "dob must be a date written YYYY-MM-DD"),
    ("country", "ZZ", "country must be an ISO-3166-1 alpha-2 code"),
    ("country", "de", "country must be an ISO-3166-1 alpha-2 code"),
    ("gender", "X", "gender must be one of M, F, O, N, P"),
    ("email", "not-an-address", "email must be a valid email address"),
    ("email_subscribe", "yes", "email_subscribe must be one of opted_in, subscribed, unsubscribed"),
    ("time_zone", "Mars/Olympus", "time_zone must be an IANA time zone name"),
    ("nickname", "x" * 256, "attribute nickname is 256 characters; at most 255"),
    ("score", float("nan"), "attribute score is nan; JSON has no NaN or infinity"),
    ("tags", ["ok", "y" * 300], "attribute tags holds a string over 255 characters"),
]


@pytest.mark.parametrize(("field", "value", "reason"), BAD_ATTRIBUTES, ids=[f"{f}-{i}" for i, (f, _, _) in enumerate(BAD_ATTRIBUTES)])
def test_invalid_attributes_are_rejected_locally_and_never_sent(field: str, value: Any, reason: str) -> None:
    good = {"user_id": "u1", "v": {"tags": ["a"], "score": 1.0}.get(field, "M" if field == "gender" else None)}
    rows = [DeltaRow(1, "upsert", good), DeltaRow(2, "upsert", {"user_id": "u2", "v": value})]
    result, seen = run_writer(sync(fields={field: "v"}), rows)
    assert reason in result.rejected[2] and "(column v)" in result.rejected[2]
    assert result.accepted == [1]
    assert [o["external_id"] for o in calls(seen)[0][2]["attributes"]] == ["u1"]


def test_valid_standard_values_pass() -> None:
    config = sync(fields={"dob": "dob", "gender": "g", "country": "c", "email_subscribe": "s", "time_zone": "tz"})
    row = {"user_id": "u1", "dob": "1990-02-28", "g": "n", "c": "GB", "s": "unsubscribed", "tz": "America/New_York"}
    result, _ = run_writer(config, users(row))
    assert result.accepted == [1] and not result.rejected


def test_empty_identifiers_are_rejected() -> None:
    result, seen = run_writer(sync(), users({"user_id": "", "plan": "a", "ltv": 1.0}, {"user_id": None, "plan": "b", "ltv": 1.0}))
    assert result.rejected == {1: "identifier external_id is empty (column user_id)", 2: "identifier external_id is empty (column user_id)"}
    assert seen == []


def test_invalid_events_are_rejected_locally() -> None:
    config = events(event={"name": {"column": "kind"}, "time": "at"}, fields={"note": "note"})
    rows = [
        DeltaRow(1, "track", {"order_id": "o1", "user_id": "u1", "kind": "", "at": "2026-01-01T00:00:00Z", "note": "n"}),
        DeltaRow(2, "track", {"order_id": "o2", "user_id": "u1", "kind": "k", "at": "yesterday", "note": "n"}),
        DeltaRow(3, "track", {"order_id": "o3", "user_id": "u1", "kind": "k", "at": None, "note": "n"}),
        DeltaRow(4, "track", {"order_id": "o4", "user_id": "u1", "kind": "k", "at": "2026-01-01T00:00:00Z", "note": "z" * 300}),
        DeltaRow(5, "track", {"order_id": "o5", "user_id": "u1", "kind": "k", "at": "2026-01-01T00:00:00Z", "note": "fine"}),
    ]
    result, _ = run_writer(config, rows)
    assert result.accepted == [5]
    assert "event name is empty" in result.rejected[1]
    assert "event time must be an ISO 8601 date-time" in result.rejected[2]
    assert "event time is empty" in result.rejected[3]
    assert "property note is 300 characters" in result.rejected[4]


def test_catalog_item_ids_are_checked_locally() -> None:
    rows = [DeltaRow(1, "upsert", {"sku": "has space", "title": "t", "price": 1.0}),
            DeltaRow(2, "upsert", {"sku": "x" * 251, "title": "t", "price": 1.0}),
            DeltaRow(3, "upsert", {"sku": "ok_1-2", "title": "t", "price": 1.0})]
    result, seen = run_writer(catalog(), rows)
    assert result.accepted == [3] and set(result.rejected) == {1, 2}
    assert "catalog item id must be 1 to 250 letters" in result.rejected[1]
    assert [i["id"] for i in calls(seen)[0][2]["items"]] == ["ok_1-2"]


def test_subscription_ids_are_checked_locally() -> None:
    config = audience(primary_key="phone", identifiers={"phone": "phone"}, audience={"subscription_group_id": "g"})
    result, _ = run_writer(config, [DeltaRow(1, "join", {"phone": "555-1234"}), DeltaRow(2, "join", {"phone": "+15555550100"})])
    assert result.accepted == [2] and "E.164" in result.rejected[1]


# --- answers -> per-row outcomes -----------------------------------------------------------
def test_201_with_indexed_errors_rejects_only_those_rows() -> None:
    def partial(request: httpx.Request) -> httpx.Response:
        return httpx.Response(201, json={"message": "success", "errors": [{"type": "bad thing", "input_array": "attributes", "index": 1}]})

    result, _ = run_writer(sync(), users(*({"user_id": f"u{i}", "plan": "p", "ltv": 1.0} for i in range(3))), partial)
    assert sorted(result.accepted) == [1, 3] and result.rejected == {2: "bad thing"}


def test_400_all_invalid_rejects_every_row() -> None:
    def invalid(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"message": "Valid data must be provided", "errors": [{"type": "nope", "index": 0}]})

    result, _ = run_writer(sync(), users({"user_id": "u1", "plan": "p", "ltv": 1.0}, {"user_id": "u2", "plan": "p", "ltv": 1.0}), invalid)
    assert result.rejected == {1: "nope (HTTP 400)", 2: "Valid data must be provided (HTTP 400)"}


def test_catalog_errors_reject_named_items_and_resend_the_rest() -> None:
    seen_ids: list[list[str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        ids = [i["id"] for i in orjson.loads(request.content)["items"]]
        seen_ids.append(ids)
        if "dup" in ids:
            return httpx.Response(400, json={"message": "Invalid Request", "errors": [
                {"id": "item-already-exists", "message": "An item with this id already exists", "parameters": ["id"],
                 "parameter_values": ["dup"]}]})
        return httpx.Response(202, json={"message": "success"})

    rows = [DeltaRow(1, "insert", {"sku": "a", "title": "t", "price": 1.0}), DeltaRow(2, "insert", {"sku": "dup", "title": "t", "price": 1.0})]
    result, _ = run_writer(catalog(mode="insert"), rows, handler)
    assert seen_ids == [["a", "dup"], ["a"]]
    assert result.accepted == [1] and "item-already-exists" in result.rejected[2]


def test_catalog_patch_of_a_missing_item_is_skipped_like_update_existing_only() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        ids = [i["id"] for i in orjson.loads(request.content)["items"]]
        if "gone" in ids:
            return httpx.Response(404, json={"message": "Invalid Request", "errors": [
                {"id": "item-not-found", "message": "Could not find item", "parameters": ["id"], "parameter_values": ["gone"]}]})
        return httpx.Response(202, json={"message": "success"})

    rows = [DeltaRow(1, "update", {"sku": "a", "title": "t", "price": 1.0}), DeltaRow(2, "update", {"sku": "gone", "title": "t", "price": 1.0})]
    result, seen = run_writer(catalog(mode="update"), rows, handler)
    assert sorted(result.accepted) == [1, 2] and not result.rejected and len(seen) == 2


def test_catalog_invalid_fields_reject_the_batch_and_a_missing_catalog_stops_the_run() -> None:
    def fields(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"message": "Invalid Request", "errors": [
            {"id": "invalid-fields", "message": "Fields not in catalog", "parameters": ["fields"], "parameter_values": ["price"]}]})

    result, _ = run_writer(catalog(), [DeltaRow(1, "upsert", {"sku": "a", "title": "t", "price": 1.0})], fields)
    assert "invalid-fields" in result.rejected[1]

    def missing(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"message": "Invalid Request", "errors": [
            {"id": "catalog-not-found", "message": "Could not find catalog", "parameters": ["catalog_name"], "parameter_values": ["products"]}]})

    with pytest.raises(TerminalError, match="no catalog 'products'"):
        run_writer(catalog(), [DeltaRow(1, "upsert", {"sku": "a", "title": "t", "price": 1.0})], missing)


def test_a_refused_subscription_batch_is_halved_until_the_bad_id_stands_alone() -> None:
    sent: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        ids = orjson.loads(request.content)["subscription_groups"][0]["external_ids"]
        sent.append(len(ids))
        if "bad" in ids:
            return httpx.Response(400, json={"message": "subscription_groups[0]: user 'bad' is blocked"})
        return httpx.Response(201, json={"message": "success"})

    rows = [DeltaRow(i + 1, "join", {"user_id": "bad" if i == 5 else f"u{i}"}) for i in range(8)]
    result, _ = run_writer(audience(audience={"subscription_group_id": "g"}), rows, handler)
    assert sorted(result.accepted) == [1, 2, 3, 4, 5, 7, 8]
    assert "blocked" in result.rejected[6]
    assert sent[0] == 8 and len(sent) <= 1 + 2 * 3


# --- configuration -------------------------------------------------------------------------
def test_instances_map_to_documented_hosts_and_base_url_wins() -> None:
    assert INSTANCES["US-01"] == "https://rest.iad-01.braze.com"
    assert INSTANCES["US-08"] == "https://rest.iad-08.braze.com"
    assert INSTANCES["US-10"] == "https://rest.iad-10.braze.com"
    assert INSTANCES["EU-01"] == "https://rest.fra-01.braze.eu" and INSTANCES["EU-02"] == "https://rest.fra-02.braze.eu"
    assert INSTANCES["AU-01"] == "https://rest.au-01.braze.com"
    assert BrazeDestination("b", BrazeConfig(instance="us-03", api_key="k")).base_url() == "https://rest.iad-03.braze.com"  # type: ignore[arg-type]
    assert destination(instance="EU-01").base_url() == "https://braze.test"
    with pytest.raises(ValueError, match="unknown Braze instance"):
        BrazeConfig(instance="US-09", api_key="k")  # type: ignore[arg-type]


def test_rates_default_to_the_documented_limits() -> None:
    settings = destination().delivery_settings()
    assert 970 <= settings.endpoint_rates["users/track"] < 1000
    assert settings.endpoint_rates["users/delete"] < 20_000 / 60
    assert destination(requests_per_second=10).delivery_settings().endpoint_rates["catalogs"] == 10


@pytest.mark.parametrize(("config", "problem"), [
    (catalog(identifiers={"external_id": "sku"}), "identifiers: {id: sku}"),
    (catalog(catalog="bad name"), "catalog name 'bad name'"),
    (catalog(fields={"id": "sku"}), "catalog field names ['id']"),
    (catalog(primary_key=["sku", "region"], identifiers={"id": "sku"}), "one primary key column"),
    (audience(audience={"name": "vip", "subscription_group_id": "g"}), "either `name:`"),
    (audience(audience={"subscription_group_id": "g", "membership": "array"}), "not subscription groups"),
    (sync(fields={"$plan": "plan"}), "must not start with '$'"),
    (sync(fields={"external_id": "plan"}), "Braze's own keys"),
    (events(fields={"x" * 256: "amount"}), "Braze allows 255"),
    (sync(object="products"), "catalog: <name>"),
    (sync(identifiers={"user_id": "user_id"}), "unknown Braze identifier"),
])
def test_check_sync_names_the_problem(config: SyncConfig, problem: str) -> None:
    problems = destination().check_sync(config)
    assert any(problem in p for p in problems), problems


def test_valid_syncs_have_no_problems() -> None:
    for config in (sync(), sync(mode="mirror", on_remove="delete"), audience(), events(), catalog(mode="mirror"),
                   audience(audience={"subscription_group_id": "g"}),
                   audience(audience={"name": "vip", "membership": "array"})):
        assert destination().check_sync(config) == [], config.name
