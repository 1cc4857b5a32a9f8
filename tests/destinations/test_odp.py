"""ODP destination: golden request bodies, outcome mapping, and end-to-end runs against the strict emulator."""

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
from reverse_etl.delivery.client import AuthError, DeliveryClient
from reverse_etl.destinations.base import ChunkResult, DeltaRow, dumps
from reverse_etl.destinations.odp import payload
from reverse_etl.destinations.odp.config import OdpAudience, OdpConfig, list_id_for
from reverse_etl.destinations.odp.destination import MAX_RESENDS, NOT_APPLIED, OdpDestination, OdpWriter
from reverse_etl.destinations.registry import destination_class
from reverse_etl.sandbox import Faults, SandboxServer
from reverse_etl.sandbox import odp as odp_emulator
from reverse_etl.sandbox.odp import OdpEmulator
from tests.helpers import set_model, values_sql, write_project

REPO = Path(__file__).resolve().parents[2]


# --- helpers ---------------------------------------------------------------------------------
def sync(**overrides: Any) -> SyncConfig:
    base: dict[str, Any] = {
        "name": "traits", "model": "traits", "destination": "odp", "type": "records", "mode": "upsert",
        "primary_key": "user_id", "identifiers": {"email": "email"},
        "fields": {"first_name": "first_name", "lifetime_value": "ltv"},
    }
    base.update(overrides)
    return SyncConfig.model_validate(base)


def audience(**overrides: Any) -> SyncConfig:
    base: dict[str, Any] = {"type": "audience", "mode": "mirror", "fields": {}, "audience": {"list": "Retl VIP"}}
    return sync(**{**base, **overrides})


def events(**overrides: Any) -> SyncConfig:
    base: dict[str, Any] = {
        "name": "orders", "type": "events", "mode": "insert", "primary_key": "order_id",
        "identifiers": {"customer_id": "user_id"}, "fields": {"total": "amount", "product_id": "sku"},
        "event": {"type": "order", "action": "purchase", "time": "created_at"},
    }
    return sync(**{**base, **overrides})


def destination(**config: Any) -> OdpDestination:
    return OdpDestination("odp", OdpConfig.model_validate({"type": "odp", "region": "us", "api_key": "k-123", **config}))


def built(item: payload.Built) -> bytes:
    """The JSON of a built item, exactly as a request body would carry it."""
    obj, problem = item
    assert obj is not None, problem
    return dumps(obj)


Handler = Callable[[httpx.Request], httpx.Response]


def odp_json(status: int, body: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.Response(status, json={"title": "x", "status": status, "timestamp": "t", **(body or {})})


def run_writer(sync_config: SyncConfig, rows: list[DeltaRow], handler: Handler, **config: Any) -> tuple[ChunkResult, list[httpx.Request]]:
    """Run a writer's prepare + write through MockTransport; return its result and every request made."""
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        request.read()
        seen.append(request)
        return handler(request)

    dest = destination(**{"base_url": "https://odp.test/v3", "max_retries": 0, **config})

    async def go() -> ChunkResult:
        async with DeliveryClient(dest.delivery_settings(), transport=httpx.MockTransport(record)) as client:
            writer = dest.writer(sync_config, client)
            await writer.prepare()
            return await writer.write(rows)

    return asyncio.run(go()), seen


def bodies(requests: list[httpx.Request], path: str) -> list[Any]:
    return [orjson.loads(r.content) for r in requests if r.url.path == path and r.method == "POST"]


# --- golden request bodies (payload builders) ------------------------------------------------
def test_profile_upsert_golden_body() -> None:
    s = sync(identifiers={"email": "email", "customer_id": "user_id"},
             fields={"first_name": "first_name", "lifetime_value": "ltv", "signup_at": "signup", "plan": "plan"})
    row = DeltaRow(1, "upsert", {"user_id": 42, "email": "a@x.io", "first_name": "Ann", "ltv": Decimal("12.50"),
                                 "signup": datetime(2024, 5, 1, 12, 0), "plan": None})
    assert built(payload.profile_item(s, row)) == (
        b'{"attributes":{"email":"a@x.io","customer_id":"42","first_name":"Ann","lifetime_value":12.5,'
        b'"signup_at":"2024-05-01T12:00:00Z","plan":null}}'
    )


def test_profile_mirror_removal_clears_the_mapped_fields_only() -> None:
    row = DeltaRow(1, "remove", {"user_id": "u1", "email": "a@x.io", "first_name": "Ann", "ltv": 3.0})
    assert built(payload.profile_item(sync(mode="mirror"), row)) == (
        b'{"attributes":{"email":"a@x.io","first_name":null,"lifetime_value":null}}'
    )


def test_profile_leaves_out_empty_identifiers_but_needs_one() -> None:
    s = sync(identifiers={"email": "email", "customer_id": "user_id"}, fields={})
    assert built(payload.profile_item(s, DeltaRow(1, "upsert", {"user_id": "u1", "email": None}))) == (
        b'{"attributes":{"customer_id":"u1"}}'
    )
    obj, problem = payload.profile_item(s, DeltaRow(1, "upsert", {"user_id": "", "email": None}))
    assert obj is None
    assert problem == "no identifier has a value: email (column email), customer_id (column user_id)"


def test_object_record_golden_body() -> None:
    s = sync(object="products", primary_key="sku", identifiers={"product_id": "sku"},
             fields={"name": "title", "price": "price"}, mode="mirror")
    upsert = DeltaRow(1, "upsert", {"sku": "SKU-1", "title": "Cable", "price": 9.99})
    remove = DeltaRow(2, "remove", {"sku": 7, "title": "Old", "price": 1.0})
    assert built(payload.object_record(s, upsert)) == b'{"product_id":"SKU-1","name":"Cable","price":9.99}'
    assert built(payload.object_record(s, remove)) == b'{"product_id":7,"name":null,"price":null}'


def test_subscription_golden_bodies() -> None:
    s = audience()
    spec = OdpAudience.model_validate(s.audience)
    assert spec.list_id == "retl_vip"
    join = DeltaRow(1, "join", {"user_id": "u1", "email": "a@x.io"})
    leave = DeltaRow(2, "leave", {"user_id": "u2", "email": "b@x.io"})
    assert built(payload.subscription(s, spec, join)) == b'{"list_id":"retl_vip","email":"a@x.io","subscribed":true}'
    assert built(payload.subscription(s, spec, leave)) == b'{"list_id":"retl_vip","email":"b@x.io","subscribed":false}'


def test_event_golden_body_with_pinned_idempotence_id() -> None:
    from reverse_etl.destinations.odp.config import OdpEvent

    s = events()
    row = DeltaRow(1, "track", {"order_id": "o-1", "user_id": "u1", "amount": Decimal("19.99"), "sku": None,
                                "created_at": datetime(2024, 5, 1, 12, 0, 30, 900000)})
    # The id is pinned: if it ever changes, events resent after an upgrade would be duplicated in ODP.
    assert built(payload.event_item(s, OdpEvent.model_validate(s.event), row)) == (
        b'{"type":"order","action":"purchase","identifiers":{"customer_id":"u1"},'
        b'"data":{"ts":1714564830,"idempotence_id":"0076abb9-ad12-5804-821a-d8bdb0978d4c","total":19.99}}'
    )


def test_event_type_and_action_from_columns() -> None:
    from reverse_etl.destinations.odp.config import OdpEvent

    s = events(event={"type": {"column": "kind"}, "action": {"column": "verb"}, "time": "created_at"}, fields={})
    spec = OdpEvent.model_validate(s.event)
    values = {"order_id": "o-2", "user_id": "u1", "kind": "cart", "verb": None, "created_at": date(2024, 5, 1)}
    assert built(payload.event_item(s, spec, DeltaRow(1, "track", values))) == (
        b'{"type":"cart","identifiers":{"customer_id":"u1"},'
        b'"data":{"ts":1714521600,"idempotence_id":"24025363-663f-5963-b575-690c22370070"}}'
    )
    obj, problem = payload.event_item(s, spec, DeltaRow(1, "track", {**values, "kind": " "}))
    assert obj is None and problem == "event type (column kind) is empty"


def test_idempotence_id_depends_on_sync_and_whole_key_only() -> None:
    assert payload.idempotence_id("orders", ["o-1"]) == "0076abb9-ad12-5804-821a-d8bdb0978d4c"
    assert payload.idempotence_id("other", ["o-1"]) != payload.idempotence_id("orders", ["o-1"])
    assert payload.idempotence_id("orders", ["u1", 2]) != payload.idempotence_id("orders", [2, "u1"])
    assert payload.idempotence_id("orders", ["u1", 2]) == "6e87185e-e419-550e-a44f-30d47f30d072"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (datetime(1970, 1, 1, 0, 1), 60),  # naive warehouse times are UTC
        (datetime(1970, 1, 1, 1, 1, tzinfo=timezone(timedelta(hours=1))), 60),
        ("1970-01-01T00:01:00Z", 60),
        (date(1970, 1, 2), 86400),
        (1714564830, 1714564830),
        (Decimal("1714564830.7"), 1714564830),
    ],
)
def test_epoch_seconds(value: Any, expected: int) -> None:
    assert payload.epoch_seconds(value) == (expected, None)


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"created_at": None}, "event time (column created_at) is empty"),
        ({"created_at": 1714564830000}, "looks like epoch milliseconds"),
        ({"created_at": "yesterday"}, "is not an ISO 8601 time"),
        ({"sku": ["a", "b"]}, "field product_id is a list; ODP fields take a string, number, boolean or null (column sku)"),
        ({"user_id": None}, "no identifier has a value"),
    ],
)
def test_rows_that_cannot_be_sent_are_rejected_locally(values: dict[str, Any], reason: str) -> None:
    from reverse_etl.destinations.odp.config import OdpEvent

    s = events()
    row = {"order_id": "o-1", "user_id": "u1", "amount": 1.0, "sku": "S", "created_at": datetime(2024, 1, 1), **values}
    obj, problem = payload.event_item(s, OdpEvent.model_validate(s.event), DeltaRow(1, "track", row))
    assert obj is None
    assert problem is not None and reason in problem


def test_invalid_rows_reads_every_invalids_shape() -> None:
    body = {"detail": {"invalids": [
        {"index": 0, "message": "bad email"},
        {"event": 2, "message": "type is required"},
        {"index": 3, "field": "plan", "reason": "no such field"},
        {"index": 3, "message": "second problem"},
        {"index": 9, "message": "outside the batch"},
        {"message": "no index"},
    ]}}
    assert payload.invalid_rows(body, 4) == {
        0: "bad email", 2: "type is required", 3: "field plan: no such field; second problem",
    }
    assert payload.invalid_rows({"detail": {}}, 4) is None
    assert payload.invalid_rows({"detail": {"invalids": [{"index": 7, "message": "x"}]}}, 4) is None


def test_list_id_rule_matches_the_emulator() -> None:
    for name in ("Retl VIP", "high-value / EU", "already_ok", "Ünïcode 2024!"):
        assert list_id_for(name) == odp_emulator.list_id_for(name)


# --- config and check_sync -------------------------------------------------------------------
def test_regions_base_url_and_auth() -> None:
    assert destination_class("odp") is OdpDestination
    assert destination(region="EU").base_url() == "https://api.eu1.odp.optimizely.com/v3"
    assert destination(region="au").base_url() == "https://api.au1.odp.optimizely.com/v3"
    assert destination().base_url() == "https://api.zaius.com/v3"
    assert destination(base_url="https://proxy.example.com/v3/").base_url() == "https://proxy.example.com/v3"
    settings = destination().delivery_settings()
    assert settings.auth_headers["x-api-key"] == "k-123"
    assert settings.secrets == ("k-123",)
    assert settings.endpoint_rates == {"profiles": 10.0, "lists": 10.0}
    assert settings.requests_per_second is None
    assert OdpDestination.default_batch_size == 100 and OdpDestination.max_batch_size == 500


def test_rate_limits_are_configurable_and_capped_by_requests_per_second() -> None:
    rates = destination(rate_limits={"events": 50, "lists": 2}).delivery_settings().endpoint_rates
    assert rates == {"profiles": 10.0, "lists": 2.0, "events": 50.0}
    capped = destination(requests_per_second=4, rate_limits={"events": 50}).delivery_settings().endpoint_rates
    assert capped == {"profiles": 4.0, "lists": 4.0, "events": 4.0}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"region": None}, "needs `region:`"),
        ({"api_key": None}, "needs `api_key:`"),
        ({"region": "mars"}, "region"),
        ({"rate_limits": {"segments": 1}}, "unknown endpoint"),
        ({"rate_limits": {"profiles": 0}}, "positive"),
        ({"identifier_fields": ["Loyalty-ID"]}, "lower snake case"),
    ],
)
def test_bad_profiles_are_refused(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        destination(**config)


def test_sandbox_needs_no_region_or_key() -> None:
    dest = OdpDestination("odp", OdpConfig.model_validate({"type": "odp", "sandbox": True}))
    assert dest.auth_headers() == {"x-api-key": "sandbox-key"}
    assert dest.sandbox_options() == {}
    assert dest.use_sandbox("http://127.0.0.1:5000") == "http://127.0.0.1:5000/v3"


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        (sync(mode="update"), "only upsert (create or update), so mode 'update' cannot be honoured"),
        (sync(mode="insert"), "so mode 'insert' cannot be honoured"),
        (sync(mode="mirror", on_remove="delete"), "no API to delete"),
        (sync(identifiers={"external_id": "user_id"}), "['external_id'] are not ODP identifier fields"),
        (sync(fields={"FirstName": "first_name"}), "lower snake case"),
        (sync(fields={"email": "email"}), "mapped both as identifiers and as fields"),
        (sync(catalog="products"), "ODP has no catalogs"),
        (sync(object="Products", identifiers={"product_id": "sku"}), "object names are lower snake case"),
        (sync(object="products", identifiers={"product_id": "sku", "id": "x"}), "the object's primary key"),
        (audience(identifiers={"email": "email", "customer_id": "user_id"}), "exactly one identifier"),
        (audience(fields={"plan": "plan"}), "membership only"),
        (audience(audience={"name": "vip"}), "invalid `audience:` for ODP"),
        (audience(audience={"list": "!!!"}), "no usable list id"),
        (events(fields={"ts": "created_at"}), "set by retl"),
        (events(event={"type": {"col": "x"}, "time": "created_at"}), "invalid `event:` for ODP"),
        (events(event={"type": "order"}), "invalid `event:` for ODP"),
    ],
)
def test_check_sync_explains_what_odp_cannot_do(config: SyncConfig, problem: str) -> None:
    problems = destination().check_sync(config)
    assert any(problem in p for p in problems), problems


def test_check_sync_accepts_the_supported_shapes() -> None:
    dest = destination(identifier_fields=["loyalty_id"])
    for config in (
        sync(), sync(mode="mirror"), sync(identifiers={"loyalty_id": "user_id"}),
        sync(object="products", identifiers={"product_id": "sku"}, fields={"name": "title"}),
        audience(), audience(mode="add"), audience(mode="remove"), events(),
    ):
        assert dest.check_sync(config) == [], config.name
    assert destination(batch_size=501).check_sync(sync()) == ["batch_size 501 is over odp's limit of 500"]
    assert dest.extra_columns(events(event={"type": {"column": "k"}, "time": "t"})) == ["t", "k"]


def test_example_syncs_file_is_valid_for_odp() -> None:
    raw = [s for f in ("audiences", "traits", "events") for s in yaml.safe_load((REPO / "syncs" / f"{f}.yml").read_text())["syncs"]
           if s["destination"] == "odp"]
    configs = {s["name"]: SyncConfig.model_validate(s) for s in raw}
    dest = OdpDestination("odp", OdpConfig.model_validate({"type": "odp", "sandbox": True}))
    assert {n: dest.check_sync(c) for n, c in configs.items()} == {n: [] for n in configs}
    assert {(c.type, c.effective_mode) for c in configs.values()} == {
        ("audience", "mirror"), ("records", "upsert"), ("events", "insert"),
    }


# --- the writer through MockTransport --------------------------------------------------------
def trait_rows(n: int) -> list[DeltaRow]:
    return [DeltaRow(i + 1, "upsert", {"user_id": f"u{i}", "email": f"u{i}@x.io", "first_name": f"N{i}", "ltv": i})
            for i in range(n)]


def test_writer_batches_and_sends_golden_requests() -> None:
    result, seen = run_writer(sync(), trait_rows(5), lambda r: odp_json(202), batch_size=2)
    assert [(r.method, r.url.path) for r in seen] == [("POST", "/v3/profiles")] * 3
    assert all(r.headers["x-api-key"] == "k-123" and r.headers["content-type"] == "application/json" for r in seen)
    assert seen[2].content == b'[{"attributes":{"email":"u4@x.io","first_name":"N4","lifetime_value":4}}]'
    assert [len(b) for b in bodies(seen, "/v3/profiles")] == [2, 2, 1]
    assert sorted(result.accepted) == [1, 2, 3, 4, 5] and not result.rejected and not result.failed


def test_writer_routes_each_sync_type_to_its_endpoint_and_rate_bucket() -> None:
    client: Any = None
    cases = {
        "/profiles": (sync(), "profiles"),
        "/objects/products": (sync(object="products", identifiers={"product_id": "sku"}, fields={}), "objects"),
        "/lists/subscriptions": (audience(), "lists"),
        "/events": (events(), "events"),
    }
    row = DeltaRow(1, "join", {"user_id": "u1", "email": "a@x.io", "sku": "S", "order_id": "o", "created_at": 0})
    for path, (config, endpoint) in cases.items():
        calls, rejected = OdpWriter(destination(), config, client).build([row])
        assert not rejected
        assert [(c.path, c.endpoint) for c in calls] == [(path, endpoint)]


def test_audience_prepare_creates_the_missing_list_then_subscribes() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json={"lists": [{"list_id": "other", "name": "Other"}]})
        if request.url.path == "/v3/lists":
            return httpx.Response(200, json={"created": {"list_id": "retl_vip", "name": "Retl VIP"}})
        return httpx.Response(200, json={"updates": []})

    rows = [DeltaRow(1, "join", {"user_id": "u1", "email": "a@x.io"}), DeltaRow(2, "leave", {"user_id": "u2", "email": "b@x.io"})]
    result, seen = run_writer(audience(), rows, handler)
    assert [(r.method, r.url.path) for r in seen] == [
        ("GET", "/v3/lists"), ("POST", "/v3/lists"), ("POST", "/v3/lists/subscriptions"),
    ]
    assert bodies(seen, "/v3/lists") == [{"name": "Retl VIP"}]
    assert bodies(seen, "/v3/lists/subscriptions") == [[
        {"list_id": "retl_vip", "email": "a@x.io", "subscribed": True},
        {"list_id": "retl_vip", "email": "b@x.io", "subscribed": False},
    ]]
    assert sorted(result.accepted) == [1, 2]


@pytest.mark.parametrize(
    "create_answer",
    [None, odp_json(400, {"message": "exists", "detail": {"list_id": "retl_vip"}})],
    ids=["listed", "created-concurrently"],
)
def test_audience_prepare_uses_an_existing_list(create_answer: httpx.Response | None) -> None:
    listed = [] if create_answer is not None else [{"list_id": "retl_vip", "name": "Retl VIP"}]

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json={"lists": listed})
        if request.url.path == "/v3/lists":
            assert create_answer is not None, "the list exists; it must not be created again"
            return create_answer
        return httpx.Response(200, json={"updates": []})

    result, seen = run_writer(audience(), [DeltaRow(1, "join", {"user_id": "u1", "email": "a@x.io"})], handler)
    assert result.accepted == [1]
    assert len(bodies(seen, "/v3/lists")) == (1 if create_answer is not None else 0)


def test_audience_prepare_stops_when_the_list_cannot_be_created() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json={"lists": []})
        return odp_json(400, {"message": "list quota reached", "detail": {}})

    with pytest.raises(reverse_etl.RetlError, match="creating ODP list 'Retl VIP' failed with 400: list quota reached"):
        run_writer(audience(), [DeltaRow(1, "join", {"user_id": "u1", "email": "a@x.io"})], handler)


def invalids(*entries: tuple[int, str]) -> httpx.Response:
    return odp_json(400, {"message": f"{len(entries)} invalid", "detail": {"invalids": [{"index": i, "message": m} for i, m in entries]}})


def emails(requests: list[httpx.Request]) -> list[list[str]]:
    """The email of each profile in each /profiles request, in order."""
    return [[i["attributes"]["email"] for i in b] for b in bodies(requests, "/v3/profiles")]


def test_invalid_rows_are_rejected_and_the_valid_rest_resent_once() -> None:
    answers = iter([invalids((1, "bad email"), (3, "bad name")), odp_json(202)])
    result, seen = run_writer(sync(), trait_rows(5), lambda r: next(answers))
    assert emails(seen) == [
        ["u0@x.io", "u1@x.io", "u2@x.io", "u3@x.io", "u4@x.io"], ["u0@x.io", "u2@x.io", "u4@x.io"],
    ]
    assert sorted(result.accepted) == [1, 3, 5]
    assert result.rejected == {2: "bad email (HTTP 400)", 4: "bad name (HTTP 400)"}
    assert not result.failed


def test_a_resend_refused_for_another_item_is_resent_again_until_every_row_is_settled() -> None:
    # the resend of [u0, u2, u3, u4] is refused for u3 (its index 2): [u0, u2, u4] goes again
    answers = iter([invalids((1, "bad email")), invalids((2, "bad too")), odp_json(202)])
    result, seen = run_writer(sync(), trait_rows(5), lambda r: next(answers))
    assert emails(seen) == [
        ["u0@x.io", "u1@x.io", "u2@x.io", "u3@x.io", "u4@x.io"],
        ["u0@x.io", "u2@x.io", "u3@x.io", "u4@x.io"],
        ["u0@x.io", "u2@x.io", "u4@x.io"],
    ]
    assert sorted(result.accepted) == [1, 3, 5]
    assert result.rejected == {2: "bad email (HTTP 400)", 4: "bad too (HTTP 400)"}
    assert not result.failed  # settled in this run: nothing left for the next one


def test_resends_stop_after_the_bound_and_fail_the_rest_for_next_run() -> None:
    # every answer refuses the first item it is sent: each resend is one row smaller, never a loop
    rows = trait_rows(MAX_RESENDS + 3)
    result, seen = run_writer(sync(), rows, lambda r: invalids((0, "refused")))
    sizes = [len(b) for b in bodies(seen, "/v3/profiles")]
    assert sizes == [len(rows) - n for n in range(MAX_RESENDS + 1)]
    assert result.accepted == []
    assert result.rejected == {n: "refused (HTTP 400)" for n in range(1, MAX_RESENDS + 2)}
    assert result.failed == dict.fromkeys(range(MAX_RESENDS + 2, len(rows) + 1), NOT_APPLIED)
    sent = emails(seen)
    refused = [request[0] for request in sent]
    assert not [e for n, e in enumerate(refused) for later in sent[n + 1 :] if e in later]  # never sent again


@pytest.mark.parametrize("lost_first_answer", [True, False])
def test_rows_a_resend_rejects_are_unsure_when_the_batch_may_have_been_applied_before(lost_first_answer: bool) -> None:
    # the first attempt's connection drops after sending: ODP may have applied the whole batch
    def drop(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError("connection dropped", request=request)

    answers = iter([*([drop] if lost_first_answer else []), lambda r: invalids((0, "bad")), lambda r: invalids((0, "bad too")),
                    lambda r: odp_json(202)])
    result, _ = run_writer(sync(), trait_rows(4), lambda r: next(answers)(r), max_retries=1)
    assert result.rejected == {1: "bad (HTTP 400)", 2: "bad too (HTTP 400)"} and sorted(result.accepted) == [3, 4]
    # a rejected row the lost attempt may have written is not taken for absent (its removal is still sent)
    assert result.unsure == ({1, 2} if lost_first_answer else set())


def test_a_failing_resend_keeps_the_first_rejections() -> None:
    answers = iter([invalids((0, "bad email")), odp_json(503, {"message": "down"})])
    result, _ = run_writer(sync(), trait_rows(3), lambda r: next(answers))
    assert result.rejected == {1: "bad email (HTTP 400)"}
    assert set(result.failed) == {2, 3} and "503" in result.failed[2]


def test_events_invalids_are_read_by_event_index() -> None:
    rows = [DeltaRow(i + 1, "track", {"order_id": f"o{i}", "user_id": "u1", "amount": 1.0, "sku": "S",
                                      "created_at": datetime(2024, 1, 1)}) for i in range(2)]
    answers = iter([odp_json(400, {"detail": {"invalids": [{"event": 0, "message": "type is required"}]}}), odp_json(202)])
    result, seen = run_writer(events(), rows, lambda r: next(answers))
    assert result.rejected == {1: "type is required (HTTP 400)"} and result.accepted == [2]
    assert [len(b) for b in bodies(seen, "/v3/events")] == [2, 1]


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        (odp_json(400, {"message": "batch of 5 objects exceeds the limit of 4", "detail": {}}),
         "batch of 5 objects exceeds the limit of 4 (HTTP 400)"),
        (odp_json(404, {"message": "unknown object 'products'"}), "unknown object 'products' (HTTP 404)"),
        (httpx.Response(413, text="too large"), "too large (HTTP 413)"),
    ],
)
def test_errors_that_name_no_item_reject_the_whole_batch(response: httpx.Response, reason: str) -> None:
    result, seen = run_writer(sync(), trait_rows(3), lambda r: response)
    assert len(seen) == 1
    assert result.rejected == {1: reason, 2: reason, 3: reason} and not result.accepted


def test_401_raises_auth_error() -> None:
    with pytest.raises(AuthError, match="401"):
        run_writer(sync(), trait_rows(3), lambda r: odp_json(401, {"message": "invalid API key"}))


# --- end to end against the emulator on loopback ---------------------------------------------
class ServedOdp(OdpEmulator):
    """The emulator, knowing the ``base_url`` it is served at."""

    base_url = ""


@pytest.fixture
def odp() -> Iterator[ServedOdp]:
    """A strict ODP emulator (with ODP's own rate limits) on 127.0.0.1."""
    emulator = ServedOdp()
    with SandboxServer(emulator) as server:
        emulator.base_url = f"{server.url}/v3"
        yield emulator


def project(root: Path, emulator: ServedOdp, models: dict[str, str], syncs: list[dict[str, Any]], **dest: Any) -> Path:
    config = {"type": "odp", "base_url": emulator.base_url, "api_key": "sandbox-key", "max_retries": 1, **dest}
    return write_project(root, models=models, syncs={"odp": syncs}, destinations={"odp": config})


TRAIT_COLS = ["user_id", "email", "first_name", "ltv"]
TRAITS = [("u1", "a@x.io", "Ann", 10.5), ("u2", "b@x.io", "Bob", None), ("u3", "c@x.io", "Cy", 3.0)]


def trait_sync(**extra: Any) -> dict[str, Any]:
    return {"name": "traits", "model": "traits", "destination": "odp", "type": "records", "mode": "upsert",
            "primary_key": "user_id", "identifiers": {"email": "email"},
            "fields": {"first_name": "first_name", "lifetime_value": "ltv"}, **extra}


def expected_profiles(rows: list[tuple[Any, ...]]) -> dict[str, dict[str, Any]]:
    """What ODP should hold for trait rows: null fields are absent."""
    out = {}
    for _, email, name, ltv in rows:
        out[email] = {k: v for k, v in {"email": email, "first_name": name, "lifetime_value": ltv}.items() if v is not None}
    return out


def held_profiles(emulator: OdpEmulator) -> dict[str, dict[str, Any]]:
    return {p["email"]: p for p in emulator.profiles()}


def test_e2e_records_upsert_state_equals_the_model(tmp_path: Path, odp: ServedOdp) -> None:
    root = project(tmp_path, odp, {"traits": values_sql(TRAIT_COLS, TRAITS)}, [trait_sync()])
    first = reverse_etl.sync(root)
    assert first.exit_code == 0 and first.runs[0].sent == 3
    assert held_profiles(odp) == expected_profiles(TRAITS)

    changed = [("u1", "a@x.io", None, 10.5), TRAITS[1], ("u3", "c@x.io", "Cyd", 4.0)]
    set_model(root, "traits", values_sql(TRAIT_COLS, changed))
    second = reverse_etl.sync(root).runs[0]
    assert (second.status, second.changed, second.sent) == ("success", 2, 2)
    assert held_profiles(odp) == expected_profiles(changed)
    assert reverse_etl.sync(root).runs[0].sent == 0


def test_e2e_records_mirror_clears_removed_rows(tmp_path: Path, odp: ServedOdp) -> None:
    root = project(tmp_path, odp, {"traits": values_sql(TRAIT_COLS, TRAITS)}, [trait_sync(mode="mirror")])
    assert reverse_etl.sync(root).exit_code == 0
    set_model(root, "traits", values_sql(TRAIT_COLS, TRAITS[:2]))
    run = reverse_etl.sync(root).runs[0]
    assert (run.status, run.removed, run.sent) == ("success", 1, 1)
    # the profile stays (ODP cannot delete it) but holds nothing the model put there
    assert held_profiles(odp) == {**expected_profiles(TRAITS[:2]), "c@x.io": {"email": "c@x.io"}}


def test_e2e_objects_mirror(tmp_path: Path, odp: ServedOdp) -> None:
    cols = ["sku", "title", "price"]
    rows = [("S1", "Cable", 9.99), ("S2", "Mouse", 25.0)]
    products = {"name": "products", "model": "products", "destination": "odp", "type": "records", "mode": "mirror",
                "primary_key": "sku", "identifiers": {"product_id": "sku"}, "object": "products",
                "fields": {"name": "title", "price": "price"}}
    root = project(tmp_path, odp, {"products": values_sql(cols, rows)}, [products])
    assert reverse_etl.sync(root).exit_code == 0
    assert odp.object_records("products") == {
        "S1": {"product_id": "S1", "name": "Cable", "price": 9.99}, "S2": {"product_id": "S2", "name": "Mouse", "price": 25.0},
    }
    set_model(root, "products", values_sql(cols, [("S1", "Cable", 8.99)]))
    assert reverse_etl.sync(root).runs[0].sent == 2
    assert odp.object_records("products") == {"S1": {"product_id": "S1", "name": "Cable", "price": 8.99}, "S2": {"product_id": "S2"}}


def audience_sync(mode: str = "mirror", model: str = "members", name: str = "vip") -> dict[str, Any]:
    return {"name": name, "model": model, "destination": "odp", "type": "audience", "mode": mode,
            "primary_key": "user_id", "identifiers": {"email": "email"}, "audience": {"list": "Retl VIP"}}


def test_e2e_audience_mirror_follows_the_model(tmp_path: Path, odp: ServedOdp) -> None:
    members = [("u1", "a@x.io"), ("u2", "b@x.io"), ("u3", "c@x.io")]
    root = project(tmp_path, odp, {"members": values_sql(["user_id", "email"], members)}, [audience_sync()])
    first = reverse_etl.sync(root).runs[0]
    assert (first.status, first.sent) == ("success", 3)
    assert odp.lists() == {"retl_vip": "Retl VIP"}
    assert odp.list_members("retl_vip") == {"a@x.io", "b@x.io", "c@x.io"}

    # u2 leaves, u4 joins, u3 changes address: the old address leaves, the new one joins
    now = [("u1", "a@x.io"), ("u3", "c2@x.io"), ("u4", "d@x.io")]
    set_model(root, "members", values_sql(["user_id", "email"], now))
    second = reverse_etl.sync(root).runs[0]
    assert (second.status, second.sent) == ("success", 4)
    assert odp.list_members("retl_vip") == {"a@x.io", "c2@x.io", "d@x.io"}
    assert reverse_etl.sync(root).runs[0].sent == 0
    assert odp.requests_to("/v3/lists") == 1  # created once, found by GET on the later run


def test_e2e_audience_add_and_remove_modes(tmp_path: Path, odp: ServedOdp) -> None:
    models = {
        "joiners": values_sql(["user_id", "email"], [("u1", "a@x.io"), ("u2", "b@x.io")]),
        "leavers": values_sql(["user_id", "email"], [("u2", "b@x.io")]),
    }
    syncs = [audience_sync("add", "joiners", "add_vip"), audience_sync("remove", "leavers", "remove_vip")]
    root = project(tmp_path, odp, models, syncs)
    assert reverse_etl.sync(root, ["add_vip"]).exit_code == 0
    assert odp.list_members("retl_vip") == {"a@x.io", "b@x.io"}
    assert reverse_etl.sync(root, ["remove_vip"]).exit_code == 0
    assert odp.list_members("retl_vip") == {"a@x.io"}
    # add never takes anyone out: a member dropped from the model stays on the list
    set_model(root, "joiners", values_sql(["user_id", "email"], [("u3", "c@x.io")]))
    assert reverse_etl.sync(root, ["add_vip"]).runs[0].sent == 1
    assert odp.list_members("retl_vip") == {"a@x.io", "c@x.io"}


ORDER_COLS = ["order_id", "user_id", "amount", "sku", "created_at"]
ORDERS = [
    ("o1", "u1", 19.99, "S1", "2024-05-01 12:00:00"),
    ("o2", "u1", 5.0, None, "2024-05-02 08:30:00"),
    ("o3", "u2", 7.5, "S2", "2024-05-03 00:00:00"),
]


def orders_model(rows: list[tuple[Any, ...]]) -> str:
    return f"SELECT order_id, user_id, amount, sku, CAST(created_at AS TIMESTAMP) AS created_at FROM ({values_sql(ORDER_COLS, rows)})"


def expected_events(rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    out = []
    for order_id, user, amount, sku, created in rows:
        data = {"ts": int(datetime.fromisoformat(created).replace(tzinfo=UTC).timestamp()),
                "idempotence_id": payload.idempotence_id("orders", [order_id]), "total": amount}
        if sku is not None:
            data["product_id"] = sku
        out.append({"type": "order", "action": "purchase", "identifiers": {"customer_id": user}, "data": data})
    return out


def order_sync() -> dict[str, Any]:
    return {"name": "orders", "model": "orders", "destination": "odp", "type": "events", "primary_key": "order_id",
            "identifiers": {"customer_id": "user_id"}, "event": {"type": "order", "action": "purchase", "time": "created_at"},
            "fields": {"total": "amount", "product_id": "sku"}}


def by_id(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["data"]["idempotence_id"]: e for e in items}


def test_e2e_events_are_stored_once_even_when_resent(tmp_path: Path, odp: ServedOdp) -> None:
    root = project(tmp_path, odp, {"orders": orders_model(ORDERS[:2])}, [order_sync()])
    assert reverse_etl.sync(root).runs[0].sent == 2
    set_model(root, "orders", orders_model(ORDERS))
    assert reverse_etl.sync(root).runs[0].sent == 1  # only the new order
    assert by_id(odp.events()) == by_id(expected_events(ORDERS))

    resend = reverse_etl.sync(root, full_resync=True).runs[0]
    assert (resend.status, resend.sent) == ("success", 3)  # ODP accepts them...
    assert len(odp.events()) == 3  # ...and recognises every one as an event it has
    assert odp.duplicates_ignored == 3


def test_e2e_invalid_row_is_rejected_retried_next_run_and_good_rows_not_resent(tmp_path: Path, odp: ServedOdp) -> None:
    rows = [*TRAITS, ("u4", "not-an-email", "Dee", 1.0)]
    root = project(tmp_path, odp, {"traits": values_sql(TRAIT_COLS, rows)}, [trait_sync()])
    result = reverse_etl.sync(root)
    run = result.runs[0]
    assert (result.exit_code, run.status, run.sent, run.rejected) == (2, "partial", 3, 1)
    assert "not an email address" in run.rejected_sample[0]["reason"] and run.rejected_sample[0]["key"] == "u4"
    assert held_profiles(odp) == expected_profiles(TRAITS)
    assert odp.requests_to("/v3/profiles") == 2  # the batch, then its valid rows once

    again = reverse_etl.sync(root).runs[0]
    assert (again.added, again.sent, again.rejected) == (1, 0, 1)  # only the rejected row is tried again
    assert odp.requests_to("/v3/profiles") == 3

    fixed = [*TRAITS, ("u4", "d@x.io", "Dee", 1.0)]
    set_model(root, "traits", values_sql(TRAIT_COLS, fixed))
    last = reverse_etl.sync(root)
    assert (last.exit_code, last.runs[0].sent) == (0, 1)
    assert held_profiles(odp) == expected_profiles(fixed)


def test_a_batch_refused_for_other_items_on_resend_is_settled_in_one_run(odp: ServedOdp) -> None:
    # seed 1 refuses items of the first request and again of its resend: a third request settles the rest
    odp.faults = Faults(reject_rate=0.1, seed=1)
    dest = destination(base_url=odp.base_url, api_key="sandbox-key", max_retries=0, batch_size=20)

    async def go() -> ChunkResult:
        async with DeliveryClient(dest.delivery_settings()) as client:
            return await dest.writer(sync(), client).write(trait_rows(20))

    result = asyncio.run(go())
    assert odp.requests_to("/v3/profiles") == 3
    assert not result.failed  # every row accepted or rejected: nothing waits for the next run
    assert sorted([*result.accepted, *result.rejected]) == list(range(1, 21))  # each row counted once
    assert result.accepted and all("injected" in reason for reason in result.rejected.values())
    assert {p["email"] for p in odp.profiles()} == {f"u{seq - 1}@x.io" for seq in result.accepted}


def test_e2e_injected_rejections_are_retried_until_the_state_equals_the_model(tmp_path: Path, odp: ServedOdp) -> None:
    rows = [(f"o{i}", f"u{i % 3}", float(i), f"S{i}", f"2024-05-01 00:00:{i:02d}") for i in range(30)]
    root = project(tmp_path, odp, {"orders": orders_model(rows)}, [order_sync()], batch_size=10, concurrency=1)  # one request at a time: the seeded fault draws repeat
    odp.faults = Faults(reject_rate=0.1, seed=3)  # assigning seeds the draws: the same rows are refused every time
    first = reverse_etl.sync(root).runs[0]
    missing = first.rejected + first.failed
    assert first.status == "partial" and 0 < missing < 30
    assert first.sent + missing == 30
    assert len(odp.events()) == first.sent  # a refused batch applied nothing; accepted rows are all there
    assert odp.duplicates_ignored == 0

    odp.faults = Faults()
    second = reverse_etl.sync(root).runs[0]
    assert (second.status, second.added, second.sent) == ("success", missing, missing)
    assert by_id(odp.events()) == by_id(expected_events(rows))
    assert odp.duplicates_ignored == 0  # accepted events were not sent again


def test_e2e_wrong_key_stops_the_run_and_sends_nothing(tmp_path: Path, odp: ServedOdp) -> None:
    members = [("u1", "a@x.io")]
    root = project(tmp_path, odp, {"members": values_sql(["user_id", "email"], members)}, [audience_sync()], api_key="wrong")
    result = reverse_etl.sync(root)
    run = result.runs[0]
    assert (result.exit_code, run.status, run.sent) == (1, "error", 0)
    assert "401" in (run.error or "") and "wrong" not in (run.error or "")
    assert odp.lists() == {}

    project(tmp_path, odp, {"members": values_sql(["user_id", "email"], members)}, [audience_sync()])
    assert reverse_etl.sync(root).runs[0].sent == 1  # nothing was acknowledged by the failed run
    assert odp.list_members("retl_vip") == {"a@x.io"}


def test_e2e_sandbox_true_runs_against_the_managed_emulator(tmp_path: Path) -> None:
    write_project(tmp_path, models={"traits": values_sql(TRAIT_COLS, TRAITS)}, syncs={"odp": [trait_sync()]},
                  destinations={"odp": {"type": "odp", "sandbox": True}})
    assert reverse_etl.sync(tmp_path).exit_code == 0
    saved = OdpEmulator(state_path=tmp_path / ".retl" / "sandbox" / "odp.json")
    assert held_profiles(saved) == expected_profiles(TRAITS)
