"""The ODP REST API v3 emulator over real loopback HTTP: auth, validation, upserts, lists, limits, state."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from reverse_etl.sandbox import Faults, RateLimit, SandboxServer
from reverse_etl.sandbox.odp import OdpEmulator, list_id_for

KEY = "sandbox-key"
PUBLIC = "public-key"


_stopping: list[threading.Thread] = []


@pytest.fixture(autouse=True, scope="module")
def _join_background_stops() -> Iterator[None]:
    yield
    for thread in _stopping:
        thread.join()


def client_for(server: SandboxServer) -> httpx.Client:
    return httpx.Client(base_url=f"{server.url}/v3", headers={"x-api-key": KEY})


@contextmanager
def serve(**options: Any) -> Iterator[tuple[OdpEmulator, httpx.Client]]:
    """An emulator (no rate limits unless asked) and a client pointed at its ``/v3`` base URL."""
    options.setdefault("rate_limits", {})
    emulator = OdpEmulator(**options)
    server = SandboxServer(emulator).start()
    try:
        with client_for(server) as client:
            yield emulator, client
    finally:
        # stop() waits out serve_forever's 0.5 s poll; stopping in the background keeps this file fast
        stopper = threading.Thread(target=server.stop)
        stopper.start()
        _stopping.append(stopper)


def error_body(response: httpx.Response, status: int) -> dict[str, Any]:
    """Assert ``response`` is ODP's error format with ``status``; return the body."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"title", "status", "timestamp", "message", "detail"}
    assert body["status"] == status
    assert body["title"] == HTTPStatus(status).phrase
    assert datetime.fromisoformat(body["timestamp"])
    assert body["message"]
    return body


def test_requests_without_the_right_key_are_401_and_change_nothing() -> None:
    with serve() as (emulator, client):
        item = {"attributes": {"email": "a@x.io", "name": "A"}}
        missing = client.post("/profiles", json=item, headers={"x-api-key": ""})
        wrong = client.post("/profiles", json=item, headers={"x-api-key": "nope"})
        assert "missing" in error_body(missing, 401)["message"]
        assert error_body(wrong, 401)["title"] == "Unauthorized"
        assert emulator.profiles() == []
        ok = client.post("/profiles", json=item)
    assert ok.status_code == 202
    assert ok.json()["title"] == "Accepted" and ok.json()["status"] == 202
    assert emulator.profile("email", "a@x.io") == {"email": "a@x.io", "name": "A"}


def test_public_key_writes_data_but_cannot_manage_lists_or_read() -> None:
    with serve(public_key=PUBLIC) as (emulator, client):
        client.post("/lists", json={"name": "VIP"}).raise_for_status()
        public = {"x-api-key": PUBLIC}
        event = {"type": "order", "identifiers": {"email": "a@x.io"}}
        assert client.post("/profiles", json={"attributes": {"email": "a@x.io"}}, headers=public).status_code == 202
        assert client.post("/events", json=[event], headers=public).status_code == 202
        assert client.post("/objects/products", json=[{"product_id": "p1"}], headers=public).status_code == 202
        error_body(client.get("/lists", headers=public), 403)
        error_body(client.post("/lists", json={"name": "Other"}, headers=public), 403)
        sub = [{"list_id": "vip", "email": "a@x.io", "subscribed": True}]
        error_body(client.post("/lists/subscriptions", json=sub, headers=public), 403)
        error_body(client.get("/profiles", params={"email": "a@x.io"}, headers=public), 403)
    assert emulator.lists() == {"vip": "VIP"}
    assert emulator.list_members("vip") == set()


def test_body_must_be_json_with_the_json_content_type() -> None:
    with serve() as (emulator, client):
        not_json = client.post("/profiles", content=b"{nope", headers={"content-type": "application/json"})
        assert "not valid JSON" in error_body(not_json, 400)["message"]
        form = client.post("/profiles", data={"email": "a@x.io"})
        assert "application/json" in error_body(form, 415)["message"]
        empty = client.post("/profiles", content=b"", headers={"content-type": "application/json"})
        error_body(empty, 400)
        error_body(client.post("/profiles", json="a@x.io"), 400)
        error_body(client.post("/profiles", json=[]), 400)
        charset = client.post(
            "/profiles",
            content=orjson.dumps({"attributes": {"email": "a@x.io"}}),
            headers={"content-type": "application/json; charset=utf-8"},
        )
    assert charset.status_code == 202
    assert len(emulator.profiles()) == 1


@pytest.mark.parametrize(
    ("item", "needle"),
    [
        ({"email": "a@x.io"}, '{"attributes"'),
        ({"attributes": {"email": "a@x.io"}, "extra": 1}, '{"attributes"'),
        ({"attributes": {}}, "non-empty"),
        ({"attributes": {"name": "no identifier"}}, "at least one identifier"),
        ({"attributes": {"email": None, "name": "A"}}, "at least one identifier"),
        ({"attributes": {"email": "a@x.io", "FirstName": "A"}}, "lower snake case"),
        ({"attributes": {"email": "a@x.io", "tags": ["a"]}}, "not list"),
        ({"attributes": {"email": "not-an-email"}}, "not an email"),
        ({"attributes": {"customer_id": 42}}, "non-empty string"),
    ],
)
def test_an_invalid_profile_fails_the_whole_batch(item: dict[str, Any], needle: str) -> None:
    with serve() as (emulator, client):
        response = client.post("/profiles", json=[{"attributes": {"email": "ok@x.io"}}, item])
    body = error_body(response, 400)
    [invalid] = body["detail"]["invalids"]
    assert invalid["index"] == 1
    assert needle in invalid["message"]
    assert emulator.profiles() == []  # the valid item was not applied either


def test_unknown_profile_fields_are_schema_errors_when_the_schema_is_known() -> None:
    with serve(profile_fields={"name"}) as (emulator, client):
        known = client.post("/profiles", json={"attributes": {"email": "a@x.io", "name": "A"}})
        unknown = client.post("/profiles", json=[{"attributes": {"email": "b@x.io", "plan": "gold"}}])
    assert known.status_code == 202
    [invalid] = error_body(unknown, 400)["detail"]["invalids"]
    assert invalid["index"] == 0 and invalid["field"] == "plan" and "schema" in invalid["reason"]
    assert emulator.profile("email", "b@x.io") is None


def test_batch_over_max_batch_is_rejected_whole() -> None:
    with serve(max_batch=3) as (emulator, client):
        items = [{"attributes": {"email": f"u{i}@x.io"}} for i in range(4)]
        over = client.post("/profiles", json=items)
        at_limit = client.post("/profiles", json=items[:3])
    body = error_body(over, 400)
    assert body["detail"] == {"batch_size": 4, "max_batch": 3}
    assert at_limit.status_code == 202
    assert sorted(p["email"] for p in emulator.profiles()) == ["u0@x.io", "u1@x.io", "u2@x.io"]


def test_profiles_upsert_merge_and_clear_across_identifiers() -> None:
    with serve() as (emulator, client):
        first = {"email": "a@x.io", "customer_id": "c1", "name": "Ann", "city": "Oslo"}
        client.post("/profiles", json={"attributes": first}).raise_for_status()
        client.post("/profiles", json=[{"attributes": {"customer_id": "c1", "plan": "gold"}}]).raise_for_status()
        client.post("/profiles", json=[{"attributes": {"email": "a@x.io", "city": None}}]).raise_for_status()
        looked_up = client.get("/profiles", params={"customer_id": "c1"})
        missing = client.get("/profiles", params={"email": "nobody@x.io"})
    expected = {"email": "a@x.io", "customer_id": "c1", "name": "Ann", "plan": "gold"}
    assert emulator.profiles() == [expected]
    assert emulator.profile("email", "a@x.io") == emulator.profile("customer_id", "c1") == expected
    assert looked_up.status_code == 200 and looked_up.json() == {"attributes": expected}
    error_body(missing, 404)


def test_changing_and_clearing_an_identifier_updates_the_lookup() -> None:
    with serve() as (emulator, client):
        client.post("/profiles", json={"attributes": {"customer_id": "c1", "email": "old@x.io"}}).raise_for_status()
        client.post("/profiles", json={"attributes": {"customer_id": "c1", "email": "new@x.io"}}).raise_for_status()
        assert emulator.profile("email", "old@x.io") is None
        assert emulator.profile("email", "new@x.io") == {"customer_id": "c1", "email": "new@x.io"}
        client.post("/profiles", json={"attributes": {"customer_id": "c1", "email": None}}).raise_for_status()
    assert emulator.profile("email", "new@x.io") is None
    assert emulator.profiles() == [{"customer_id": "c1"}]


def test_one_item_naming_two_profiles_merges_them_into_the_older() -> None:
    with serve() as (emulator, client):
        client.post("/profiles", json={"attributes": {"email": "a@x.io", "name": "Ann"}}).raise_for_status()
        client.post("/profiles", json={"attributes": {"vuid": "v1", "name": "Anon", "seen": 3}}).raise_for_status()
        assert len(emulator.profiles()) == 2
        client.post("/profiles", json={"attributes": {"email": "a@x.io", "vuid": "v1"}}).raise_for_status()
    merged = {"email": "a@x.io", "vuid": "v1", "name": "Ann", "seen": 3}
    assert emulator.profiles() == [merged]
    assert emulator.profile("vuid", "v1") == merged


def test_events_create_profiles_and_resends_are_deduplicated_by_idempotence_id() -> None:
    ids = [str(uuid.uuid4()) for _ in range(2)]
    batch = [
        {"type": "order", "action": "purchase", "identifiers": {"email": "a@x.io"}, "data": {"ts": 1700000000, "idempotence_id": ids[0], "total": 9.5}},
        {"type": "order", "identifiers": {"customer_id": "c9"}, "data": {"idempotence_id": ids[1]}},
        {"type": "pageview", "identifiers": {"vuid": "v1"}},
    ]
    with serve() as (emulator, client):
        assert client.post("/events", json=batch).status_code == 202
        resend = client.post("/events", json=batch[:2])
        same_id_in_upper_case = client.post(
            "/events", json={"type": "order", "identifiers": {"email": "a@x.io"}, "data": {"idempotence_id": ids[0].upper()}}
        )
    assert resend.status_code == 202 and same_id_in_upper_case.status_code == 202
    events = emulator.events()
    assert [e["type"] for e in events] == ["order", "order", "pageview"]
    assert events[0] == {
        "type": "order",
        "action": "purchase",
        "identifiers": {"email": "a@x.io"},
        "data": {"ts": 1700000000, "idempotence_id": ids[0], "total": 9.5},
    }
    assert emulator.duplicates_ignored == 3
    assert emulator.summary()["duplicate_events_ignored"] == 3
    assert emulator.profile("customer_id", "c9") == {"customer_id": "c9"}
    assert emulator.profile("vuid", "v1") == {"vuid": "v1"}


def test_invalid_events_are_reported_by_event_index_and_nothing_is_stored() -> None:
    good = {"type": "order", "identifiers": {"email": "a@x.io"}}
    bad = [
        {"identifiers": {"email": "a@x.io"}},
        {"type": "order", "identifiers": {}},
        {"type": "order", "identifiers": {"phone": "123"}},
        {"type": "order", "identifiers": {"email": "a@x.io"}, "data": {"idempotence_id": "row-7"}},
        {"type": "order", "identifiers": {"email": "a@x.io"}, "data": {"ts": 1700000000000}},
        {"type": "order", "identifiers": {"email": "a@x.io"}, "data": {"ts": "2024-01-01"}},
        {"type": "order", "identifiers": {"email": "a@x.io"}, "data": {"items": [1, 2]}},
        {"type": "order", "identifiers": {"email": "a@x.io"}, "extra": True},
    ]
    with serve() as (emulator, client):
        response = client.post("/events", json=[good, *bad])
    invalids = error_body(response, 400)["detail"]["invalids"]
    assert [i["event"] for i in invalids] == list(range(1, len(bad) + 1))
    messages = [i["message"] for i in invalids]
    assert "type is required" in messages[0]
    assert "milliseconds" in messages[4]
    assert "UUID" in messages[3]
    assert emulator.events() == [] and emulator.profiles() == []


def test_objects_upsert_by_primary_key_and_unknown_objects_are_404() -> None:
    with serve(objects={"products": "product_id", "stores": "store_id"}) as (emulator, client):
        first = [{"product_id": "p1", "name": "Mug", "price": 8}, {"product_id": 2, "name": "Cup"}]
        client.post("/objects/products", json=first).raise_for_status()
        client.post("/objects/products", json={"product_id": "p1", "price": 9, "name": None}).raise_for_status()
        missing_key = client.post("/objects/products", json=[{"name": "no key"}])
        null_key = client.post("/objects/products", json=[{"product_id": None, "name": "x"}])
        unknown = client.post("/objects/orders", json=[{"order_id": "o1"}])
    assert emulator.object_records("products") == {
        "p1": {"product_id": "p1", "price": 9},
        "2": {"product_id": 2, "name": "Cup"},
    }
    assert emulator.object_records("stores") == {}
    assert "product_id" in error_body(missing_key, 400)["detail"]["invalids"][0]["message"]
    error_body(null_key, 400)
    assert "stores" in error_body(unknown, 404)["message"]
    with pytest.raises(KeyError, match="products"):
        emulator.object_records("orders")


def test_lists_are_created_with_a_derived_id_and_names_are_unique() -> None:
    with serve() as (emulator, client):
        created = client.post("/lists", json={"name": "VIP Users (2024)!"})
        duplicate = client.post("/lists", json={"name": "VIP Users (2024)!"})
        same_id = client.post("/lists", json={"name": "vip users [2024]?"})
        bad_body = client.post("/lists", json={"title": "x"})
        listed = client.get("/lists")
    assert created.status_code == 200
    assert created.json() == {"created": {"list_id": "vip_users__2024__", "name": "VIP Users (2024)!"}}
    assert "already exists" in error_body(duplicate, 400)["message"]
    error_body(same_id, 400)
    error_body(bad_body, 400)
    [entry] = listed.json()["lists"]
    assert entry["list_id"] == "vip_users__2024__" and entry["name"] == "VIP Users (2024)!"
    assert emulator.lists() == {"vip_users__2024__": "VIP Users (2024)!"}
    assert list_id_for("Café-Club") == "caf__club"


def test_subscriptions_are_idempotent_and_unknown_lists_fail_the_batch() -> None:
    with serve() as (emulator, client):
        client.post("/lists", json={"name": "Newsletter"}).raise_for_status()
        sub = [{"list_id": "newsletter", "email": "a@x.io", "subscribed": True}]
        first = client.post("/lists/subscriptions", json=sub)
        again = client.post("/lists/subscriptions", json=sub)
        assert emulator.list_members("newsletter") == {"a@x.io"}
        assert emulator.profile("email", "a@x.io") == {"email": "a@x.io"}  # subscribing created the profile
        mixed = [
            {"list_id": "newsletter", "email": "b@x.io", "subscribed": True},
            {"list_id": "nope", "email": "c@x.io", "subscribed": True},
        ]
        unknown = client.post("/lists/subscriptions", json=mixed)
        assert emulator.list_members("newsletter") == {"a@x.io"}  # b was not applied either
        two_ids = client.post(
            "/lists/subscriptions", json=[{"list_id": "newsletter", "email": "a@x.io", "vuid": "v", "subscribed": True}]
        )
        unsub = [{"list_id": "newsletter", "email": "a@x.io", "subscribed": False}]
        removed = client.post("/lists/subscriptions", json=unsub)
        removed_again = client.post("/lists/subscriptions", json=unsub)
    assert first.json() == again.json() == {"updates": [{"list_id": "newsletter", "email": "a@x.io", "subscribed": True}]}
    [invalid] = error_body(unknown, 400)["detail"]["invalids"]
    assert invalid["index"] == 1 and "nope" in invalid["message"]
    assert "exactly one identifier" in error_body(two_ids, 400)["detail"]["invalids"][0]["message"]
    assert removed.json() == removed_again.json() == {"updates": [{**unsub[0]}]}
    assert emulator.list_members("newsletter") == set()
    assert emulator.profile("email", "b@x.io") is None
    with pytest.raises(KeyError, match="newsletter"):
        emulator.list_members("nope")


def test_rate_limits_are_per_endpoint_with_retry_after() -> None:
    with serve(rate_limits={"profiles": RateLimit(requests=2, per_seconds=60)}) as (emulator, client):
        item = {"attributes": {"email": "a@x.io"}}
        statuses = [client.post("/profiles", json=item).status_code for _ in range(2)]
        throttled = client.post("/profiles", json={"attributes": {"email": "b@x.io"}})
        lookup = client.get("/profiles", params={"email": "a@x.io"})
        events = [client.post("/events", json={"type": "t", "identifiers": {"vuid": "v"}}).status_code for _ in range(5)]
    assert statuses == [202, 202]
    assert "/v3/profiles" in error_body(throttled, 429)["message"]
    assert int(throttled.headers["Retry-After"]) >= 1
    assert lookup.status_code == 429  # reads share the endpoint's window
    assert events == [202] * 5  # other endpoints have their own (here: no) limit
    assert emulator.profile("email", "b@x.io") is None


def test_default_rate_limits_follow_odp_docs() -> None:
    with serve(rate_limits=None) as (emulator, client):
        assert emulator.rate_limits == {"profiles": RateLimit(10, 1.0), "lists": RateLimit(10, 1.0)}
        statuses = [client.get("/lists").status_code for _ in range(15)]
    assert statuses[:10] == [200] * 10
    assert 429 in statuses[10:]
    with pytest.raises(ValueError, match="unknown endpoints"):
        OdpEmulator(rate_limits={"profile": RateLimit(1, 1)})


def test_injected_rejects_fail_the_batch_as_invalid_items() -> None:
    with serve(faults=Faults(reject_rate=1.0)) as (emulator, client):
        response = client.post("/profiles", json=[{"attributes": {"email": f"u{i}@x.io"}} for i in range(3)])
        events = client.post("/events", json=[{"type": "t", "identifiers": {"vuid": "v"}}])
    invalids = error_body(response, 400)["detail"]["invalids"]
    assert [i["index"] for i in invalids] == [0, 1, 2]
    assert all("injected" in i["message"] for i in invalids)
    assert error_body(events, 400)["detail"]["invalids"] == [{"event": 0, "message": "rejected (injected fault)"}]
    assert emulator.profiles() == [] and emulator.events() == []


def test_unknown_paths_are_404_and_wrong_methods_405() -> None:
    with serve() as (_, client):
        error_body(client.post("/customers", json={}), 404)
        error_body(client.post("/objects/", json={}), 404)
        error_body(client.post("/lists/subscriptions/extra", json={}), 404)
        wrong = client.delete("/lists")
        error_body(client.get("/events"), 405)
        unversioned = httpx.post(str(client.base_url).replace("/v3", "/profiles"), headers={"x-api-key": KEY}, json={})
    assert error_body(wrong, 405)["message"].endswith("use GET, POST") and wrong.headers["Allow"] == "GET, POST"
    error_body(unversioned, 404)


def test_state_round_trips_through_dump_and_load_and_survives_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "odp.json"
    emulator = OdpEmulator(rate_limits={}, state_path=state)
    # plain context managers: the restart below must see the state saved when the first server stops
    with SandboxServer(emulator) as server, client_for(server) as client:
        client.post("/profiles", json={"attributes": {"email": "a@x.io", "customer_id": "c1", "name": "Ann"}}).raise_for_status()
        client.post("/events", json={"type": "t", "identifiers": {"vuid": "v1"}, "data": {"idempotence_id": str(uuid.UUID(int=1))}}).raise_for_status()
        client.post("/objects/products", json={"product_id": "p1", "price": 3}).raise_for_status()
        client.post("/lists", json={"name": "VIP"}).raise_for_status()
        client.post("/lists/subscriptions", json={"list_id": "vip", "customer_id": "c1", "subscribed": True}).raise_for_status()
        dumped = emulator.dump()
    assert orjson.loads(orjson.dumps(dumped)) == dumped
    copy = OdpEmulator(rate_limits={})
    copy.load(dumped)
    assert copy.dump() == dumped
    assert copy.summary() == emulator.summary() == {
        "profiles": 2,
        "events": 1,
        "duplicate_events_ignored": 0,
        "objects": {"products": 1},
        "lists": {"vip": 1},
    }
    # the restarted server finds existing profiles by identifier and still remembers idempotence ids
    restarted = OdpEmulator(rate_limits={}, state_path=state)
    with SandboxServer(restarted) as server, client_for(server) as client:
        client.post("/profiles", json={"attributes": {"customer_id": "c1", "plan": "gold"}}).raise_for_status()
        client.post("/events", json={"type": "t", "identifiers": {"vuid": "v1"}, "data": {"idempotence_id": str(uuid.UUID(int=1))}}).raise_for_status()
    assert restarted.profile("email", "a@x.io") == {"email": "a@x.io", "customer_id": "c1", "name": "Ann", "plan": "gold"}
    assert len(restarted.profiles()) == 2 and len(restarted.events()) == 1
    assert restarted.duplicates_ignored == 1
    assert restarted.list_members("vip") == {"c1"}
    restarted.reset()
    assert restarted.summary() == {"profiles": 0, "events": 0, "duplicate_events_ignored": 0, "objects": {"products": 0}, "lists": {}}
