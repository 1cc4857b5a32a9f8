"""The Braze emulator over real loopback HTTP: what it accepts, what it refuses, what it keeps."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from reverse_etl.sandbox import Faults, RateLimit, Request, SandboxServer
from reverse_etl.sandbox import _formats as fmt
from reverse_etl.sandbox.braze import MAX_BODY_BYTES, NO_VALID_DATA, BrazeEmulator

KEY = {"Authorization": "Bearer sandbox-key"}


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[BrazeEmulator, httpx.Client]]:
    # one server for the module: stopping one waits out the server's 0.5 s poll
    emulator = BrazeEmulator(catalogs={"products": ["name", "price", "tags"]})
    with SandboxServer(emulator) as server, httpx.Client(base_url=server.url, headers=KEY) as client:
        yield emulator, client


@pytest.fixture
def braze(shared: tuple[BrazeEmulator, httpx.Client]) -> BrazeEmulator:
    shared[0].reset()
    return shared[0]


@pytest.fixture
def client(shared: tuple[BrazeEmulator, httpx.Client], braze: BrazeEmulator) -> httpx.Client:
    return shared[1]


def served(emulator: BrazeEmulator) -> tuple[SandboxServer, httpx.Client]:
    server = SandboxServer(emulator)  # started by its `with` block
    return server, httpx.Client(base_url=server.url, headers=KEY)


def track(client: httpx.Client, **arrays: list[Any]) -> httpx.Response:
    return client.post("/users/track", json=arrays)


# --- the HTTP surface ------------------------------------------------------------------
def test_missing_or_wrong_api_key_is_401_and_changes_nothing(braze: BrazeEmulator, client: httpx.Client) -> None:
    body = {"attributes": [{"external_id": "u1", "plan": "pro"}]}
    url = str(client.base_url) + "/users/track"
    missing = httpx.post(url, json=body)
    wrong = httpx.post(url, json=body, headers={"Authorization": "Bearer nope-nope"})
    assert missing.status_code == wrong.status_code == 401
    assert wrong.json()["message"].startswith("Invalid API key: ")
    assert "nope-nope" not in wrong.json()["message"]  # only a prefix of the key is echoed
    assert braze.users() == {}


def test_a_key_without_the_permission_gets_403() -> None:
    emulator = BrazeEmulator(permissions={"users.track"})
    server, client = served(emulator)
    with server, client:
        assert track(client, attributes=[{"external_id": "u1"}]).status_code == 201
        denied = client.post("/users/delete", json={"external_ids": ["u1"]})
        assert denied.status_code == 403 and "users.delete" in denied.json()["message"]
        assert emulator.user("u1") is not None
    with pytest.raises(ValueError, match=r"users\.write"):
        BrazeEmulator(permissions={"users.write"})


def test_unknown_path_is_404_and_wrong_method_405(client: httpx.Client) -> None:
    assert client.post("/users/trak", json={}).status_code == 404
    wrong = client.get("/users/track")
    assert wrong.status_code == 405 and wrong.headers["Allow"] == "POST"
    assert client.get("/catalogs/products/items").headers["Allow"] == "POST, PUT, PATCH, DELETE"


@pytest.mark.parametrize(
    ("content", "content_type", "message"),
    [
        (b'{"attributes": [{"external_id": "u1"}]}', "text/plain", "Content-Type must be application/json"),
        (b'{"attributes": [', "application/json", "unparseable JSON"),
        (b"[]", "application/json", NO_VALID_DATA),
        (b"{}", "application/json", NO_VALID_DATA),
        (b'{"attributes": []}', "application/json", NO_VALID_DATA),
        (b'{"attributes": {"external_id": "u1"}}', "application/json", "'attributes' must be an array"),
        (b'{"attribute": [{"external_id": "u1"}]}', "application/json", "Unknown field(s) ['attribute']"),
    ],
)
def test_malformed_bodies_are_400(client: httpx.Client, content: bytes, content_type: str, message: str) -> None:
    resp = client.post("/users/track", content=content, headers={"Content-Type": content_type})
    assert resp.status_code == 400
    assert message in resp.json()["message"]


def test_a_body_over_4_mb_is_413(braze: BrazeEmulator, client: httpx.Client) -> None:
    obj = {"external_id": "u1", "bio": "x" * 200}
    per_object = len(orjson.dumps(obj)) + 1
    body = orjson.dumps({"attributes": [obj] * (MAX_BODY_BYTES // per_object + 1)})
    assert len(body) > MAX_BODY_BYTES == 4 * 1024 * 1024
    resp = client.post("/users/track", content=body, headers={"Content-Type": "application/json"})
    assert resp.status_code == 413
    assert braze.user("u1") is None


# --- /users/track batch limits and results ---------------------------------------------
def test_75_attribute_objects_pass_and_76_fail_whole(braze: BrazeEmulator, client: httpx.Client) -> None:
    ok = track(client, attributes=[{"external_id": f"u{i}", "n": i} for i in range(75)])
    assert ok.status_code == 201
    assert ok.json() == {"message": "success", "attributes_processed": 75}
    over = track(client, attributes=[{"external_id": f"v{i}"} for i in range(76)], events=[])
    assert over.status_code == 400
    assert over.json()["errors"] == [{"type": "'attributes' has 76 objects; the maximum is 75", "input_array": "attributes"}]
    assert len(braze.users()) == 75 and braze.user("v0") is None


def test_combined_limit_counts_all_arrays() -> None:
    server, client = served(BrazeEmulator(max_objects_combined=3))
    with server, client:
        event = {"external_id": "u1", "name": "signup", "time": "2024-05-01T12:00:00Z"}
        over = track(client, attributes=[{"external_id": "u1"}] * 2, events=[event] * 2)
        assert over.status_code == 400 and "at most 3" in over.json()["message"]
        ok = track(client, attributes=[{"external_id": "u1"}], events=[event] * 2)
        assert ok.json() == {"message": "success", "attributes_processed": 1, "events_processed": 2}


def test_partial_failure_is_201_and_applies_only_the_valid_objects(braze: BrazeEmulator, client: httpx.Client) -> None:
    resp = track(
        client,
        attributes=[
            {"external_id": "u0", "country": "DE"},
            {"external_id": "u1", "country": "Germany"},
            {"external_id": "u2", "country": "FR"},
            {"country": "IT"},
        ],
    )
    assert resp.status_code == 201
    body = resp.json()
    assert body["attributes_processed"] == 2
    assert [(e["input_array"], e["index"]) for e in body["errors"]] == [("attributes", 1), ("attributes", 3)]
    assert "country" in body["errors"][0]["type"] and "identifier" in body["errors"][1]["type"]
    assert sorted(braze.users()) == ["u0", "u2"]
    assert braze.user("u2")["country"] == "FR"  # type: ignore[index]


def test_all_objects_invalid_is_400_and_lists_every_error(braze: BrazeEmulator, client: httpx.Client) -> None:
    resp = track(client, attributes=[{"external_id": "u1", "dob": "01/02/1990"}], events=[{"external_id": "u1"}])
    assert resp.status_code == 400
    assert resp.json()["message"] == NO_VALID_DATA
    assert [(e["input_array"], e["index"]) for e in resp.json()["errors"]] == [("attributes", 0), ("events", 0)]
    assert braze.users() == {}


# --- attribute formats and identifiers -------------------------------------------------
@pytest.mark.parametrize(
    ("field", "bad", "good"),
    [
        ("dob", "1990-02-30", "1990-02-28"),
        ("dob", "1990-2-3", "1990-02-03"),
        ("country", "us", "US"),
        ("country", "XX", "NZ"),
        ("gender", "male", "F"),
        ("email", "not-an-email", "ada@example.com"),
        ("email_subscribe", "yes", "opted_in"),
        ("push_subscribe", "Subscribed", "unsubscribed"),
        ("time_zone", "EST5", "America/New_York"),
        ("time_zone", "Europe/Atlantis", "Europe/Berlin"),
        ("nickname", "x" * 256, "x" * 255),
        ("tags", ["ok", "y" * 256], ["ok", "y" * 255]),
        ("tags", ["ok", 3], ["ok", "3"]),
        ("tags", {"add": ["a"], "replace": ["b"]}, {"add": ["a"], "remove": ["b"]}),
        ("$plan", "pro", None),
        ("k" * 256, "v", None),
        ("events", "x", None),
    ],
)
def test_attribute_formats_are_checked(
    braze: BrazeEmulator, client: httpx.Client, field: str, bad: Any, good: Any
) -> None:
    rejected = track(client, attributes=[{"external_id": "u1", field: bad}])
    assert rejected.status_code == 400
    assert rejected.json()["errors"][0]["index"] == 0
    assert braze.user("u1") is None
    if good is not None:
        accepted = track(client, attributes=[{"external_id": "u1", field: good}])
        assert accepted.status_code == 201 and "errors" not in accepted.json()
        assert field in braze.user("u1")  # type: ignore[operator]


def test_gender_is_case_insensitive_and_stored_upper(braze: BrazeEmulator, client: httpx.Client) -> None:
    assert track(client, attributes=[{"external_id": "u1", "gender": "p"}]).status_code == 201
    assert braze.user("u1")["gender"] == "P"  # type: ignore[index]


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ({"plan": "pro"}, "needs an identifier"),
        ({"external_id": "u1", "braze_id": "abc"}, "exactly one identifier"),
        ({"external_id": 42}, "external_id must be a non-empty string"),
        ({"external_id": ""}, "external_id must be a non-empty string"),
        ({"user_alias": {"alias_name": "a"}}, "user_alias must be"),
        ({"email": "nope"}, "valid email"),
        ({"external_id": "u1", "_update_existing_only": "yes"}, "true or false"),
        ("u1", "must be objects"),
    ],
)
def test_identifier_problems(client: httpx.Client, obj: Any, reason: str) -> None:
    resp = track(client, attributes=[obj])
    assert resp.status_code == 400
    assert reason in resp.json()["errors"][0]["type"]


def test_other_identifiers_and_email_as_an_attribute(braze: BrazeEmulator, client: httpx.Client) -> None:
    alias = {"alias_name": "anon-7", "alias_label": "web"}
    resp = track(
        client,
        attributes=[
            {"external_id": "u1", "email": "ada@example.com", "phone": "+15555550100"},
            {"email": "ada@example.com", "plan": "pro"},  # finds u1 by the email set just before
            {"phone": "+15555550100", "seats": 3},
            {"user_alias": alias, "plan": "free"},
            {"user_alias": alias, "seats": 1},
            {"braze_id": "ffffffffffffffffffffffff", "plan": "ghost"},  # unknown: never created
            {"email": "grace@example.com", "phone": "+15555550199"},
        ],
    )
    assert resp.json() == {"message": "success", "attributes_processed": 7}
    u1 = braze.user("u1")
    assert u1 is not None and (u1["plan"], u1["seats"], u1["email"]) == ("pro", 3, "ada@example.com")
    profiles = braze.profiles()
    assert profiles['user_alias:["web","anon-7"]']["plan"] == "free"
    assert profiles['user_alias:["web","anon-7"]']["seats"] == 1
    assert profiles["email:grace@example.com"]["phone"] == "+15555550199"
    assert len(profiles) == 3
    # a braze_id Braze assigned finds its user
    by_braze_id = track(client, attributes=[{"braze_id": u1["braze_id"], "plan": "team"}])
    assert by_braze_id.status_code == 201 and braze.user("u1")["plan"] == "team"  # type: ignore[index]


# --- attribute semantics ---------------------------------------------------------------
def test_update_existing_only_never_creates_a_profile(braze: BrazeEmulator, client: httpx.Client) -> None:
    track(client, attributes=[{"external_id": "u1", "plan": "free"}])
    resp = track(
        client,
        attributes=[
            {"external_id": "u1", "plan": "pro", "_update_existing_only": True},
            {"external_id": "u2", "plan": "pro", "_update_existing_only": True},
        ],
    )
    assert resp.json() == {"message": "success", "attributes_processed": 2}
    assert braze.user("u1")["plan"] == "pro"  # type: ignore[index]
    assert "_update_existing_only" not in braze.user("u1")  # type: ignore[operator]
    assert braze.user("u2") is None


def test_null_removes_a_field(braze: BrazeEmulator, client: httpx.Client) -> None:
    track(client, attributes=[{"external_id": "u1", "plan": "pro", "country": "US", "email": "a@b.co"}])
    track(client, attributes=[{"external_id": "u1", "plan": None, "country": None, "email": None}])
    user = braze.user("u1")
    assert user is not None and not {"plan", "country", "email"} & user.keys()
    # the removed email no longer finds the user
    track(client, attributes=[{"email": "a@b.co", "plan": "x"}])
    assert "plan" not in braze.user("u1")  # type: ignore[operator]


def test_a_null_does_not_hide_a_later_bad_field(braze: BrazeEmulator, client: httpx.Client) -> None:
    resp = track(client, attributes=[{"external_id": "u1", "plan": None, "country": "Germany"}])
    assert resp.status_code == 400 and "country" in resp.json()["errors"][0]["type"]


def test_a_profile_created_by_email_keeps_its_key_when_the_email_changes(
    braze: BrazeEmulator, client: httpx.Client
) -> None:
    track(client, attributes=[{"email": "old@example.com", "plan": "free"}])
    track(client, attributes=[{"email": "old@example.com", "phone": "+15555550100"}])
    track(client, attributes=[{"braze_id": "000000000000000000000001", "email": "new@example.com"}])
    track(client, attributes=[{"email": "new@example.com", "seats": 2}])
    track(client, attributes=[{"email": "old@example.com", "plan": "pro"}])
    assert braze.profiles() == {
        "email:old@example.com": {
            "braze_id": "000000000000000000000001",
            "email": "new@example.com",
            "phone": "+15555550100",
            "plan": "pro",
            "seats": 2,
            "events": [],
            "purchases": [],
        }
    }


def test_custom_arrays_replace_add_and_remove(braze: BrazeEmulator, client: httpx.Client) -> None:
    def tags(value: Any) -> Any:
        assert track(client, attributes=[{"external_id": "u1", "tags": value}]).status_code == 201
        return braze.user("u1")["tags"]  # type: ignore[index]

    assert tags({"remove": ["x"]}) == []
    assert tags(["b", "a", "b", "c"]) == ["b", "a", "c"]  # replaced, de-duplicated, order kept
    assert tags({"add": ["d", "a", "d"]}) == ["b", "a", "c", "d"]
    assert tags({"remove": ["a", "zzz"]}) == ["b", "c", "d"]
    assert tags({"add": ["e"], "remove": ["b"]}) == ["c", "d", "e"]
    assert tags(["z"]) == ["z"]


# --- events and purchases --------------------------------------------------------------
def test_events_are_appended_never_deduplicated(braze: BrazeEmulator, client: httpx.Client) -> None:
    event = {"external_id": "u1", "name": "signup", "time": "2024-05-01T12:00:00.123Z", "properties": {"plan": "pro"}}
    for _ in range(2):
        assert track(client, events=[event]).json() == {"message": "success", "events_processed": 1}
    user = braze.user("u1")  # events create the profile
    assert user is not None
    assert user["events"] == [{"name": "signup", "time": "2024-05-01T12:00:00.123Z", "properties": {"plan": "pro"}}] * 2
    assert braze.summary()["events"] == 2


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"time": "2024-05-01"}, "ISO 8601"),
        ({"time": "2024-05-01 12:00:00"}, "ISO 8601"),
        ({"time": "2024-13-01T00:00:00Z"}, "ISO 8601"),
        ({"time": 1714564800}, "ISO 8601"),
        ({"name": ""}, "event name"),
        ({"properties": ["plan"]}, "properties must be an object"),
        ({"properties": {"$plan": "pro"}}, "must not start with '$'"),
        ({"properties": {"p" * 256: 1}}, "256 characters"),
        ({"properties": {"note": "n" * 256}}, "at most 255"),
        ({"propertes": {}}, "unknown event field(s): propertes"),
        ({"email": "a@b.co"}, "exactly one identifier"),
    ],
)
def test_event_problems(braze: BrazeEmulator, client: httpx.Client, change: dict[str, Any], reason: str) -> None:
    event = {"external_id": "u1", "name": "signup", "time": "2024-05-01T12:00:00+02:00", **change}
    resp = track(client, events=[event])
    assert resp.status_code == 400 and reason in resp.json()["errors"][0]["type"]
    assert braze.user("u1") is None


def test_purchases(braze: BrazeEmulator, client: httpx.Client) -> None:
    base = {"external_id": "u1", "product_id": "sku-1", "currency": "EUR", "price": 9.5, "time": "2024-05-01T12:00:00Z"}
    resp = track(
        client,
        purchases=[
            {**base, "quantity": 2},
            {**base, "currency": "eur"},
            {**base, "currency": "ABC"},
            {**base, "price": "9.50"},
            {**base, "quantity": 101},
            {**base, "quantity": 0},
            {**base, "product_id": ""},
            {**base, "quantity": 100, "price": 0},
        ],
    )
    body = resp.json()
    assert resp.status_code == 201 and body["purchases_processed"] == 2
    assert [e["index"] for e in body["errors"]] == [1, 2, 3, 4, 5, 6]
    purchases = braze.user("u1")["purchases"]  # type: ignore[index]
    assert [(p["quantity"], p["price"]) for p in purchases] == [(2, 9.5), (100, 0)]


# --- /users/delete ---------------------------------------------------------------------
def test_delete_takes_at_most_50_ids(braze: BrazeEmulator, client: httpx.Client) -> None:
    track(client, attributes=[{"external_id": f"u{i}"} for i in range(60)])
    over = client.post("/users/delete", json={"external_ids": [f"u{i}" for i in range(51)]})
    assert over.status_code == 400 and len(braze.users()) == 60
    braze_id = braze.user("u59")["braze_id"]  # type: ignore[index]
    ok = client.post("/users/delete", json={"external_ids": [f"u{i}" for i in range(49)] + ["nobody"], "braze_ids": []})
    assert ok.status_code == 201 and ok.json() == {"deleted": 50, "message": "success"}
    assert sorted(braze.users()) == sorted(f"u{i}" for i in range(49, 60))
    assert client.post("/users/delete", json={"braze_ids": [braze_id]}).status_code == 201
    assert braze.user("u59") is None
    for bad in ({}, {"external_ids": "u1"}, {"external_ids": [7]}, {"emails": ["a@b.co"]}):
        assert client.post("/users/delete", json=bad).status_code == 400


# --- /v2/subscription/status/set -------------------------------------------------------
def test_subscription_groups(braze: BrazeEmulator, client: httpx.Client) -> None:
    def status(**group: Any) -> httpx.Response:
        body = {"subscription_groups": [{"subscription_group_id": "grp-1", **group}]}
        return client.post("/v2/subscription/status/set", json=body)

    ok = status(subscription_state="subscribed", external_ids=["u1", "u2"], emails=["a@b.co"])
    assert ok.status_code == 201 and ok.json() == {"message": "success"}
    assert status(subscription_state="unsubscribed", external_ids=["u2"]).status_code == 201
    assert braze.subscription_state("grp-1", "u1") == "subscribed"
    assert braze.subscription_state("grp-1", "u2") == "unsubscribed"
    assert braze.subscription_state("grp-2", "u1") is None
    assert braze.summary()["subscription_groups"] == {"grp-1": {"subscribed": 2, "unsubscribed": 1}}
    for bad in (
        {"subscription_state": "opted_in", "external_ids": ["u3"]},
        {"subscription_state": "subscribed", "external_ids": [f"x{i}" for i in range(51)]},
        {"subscription_state": "subscribed", "phones": ["555-0100"]},
        {"subscription_state": "subscribed"},
        {"subscription_state": ["subscribed"], "external_ids": ["u3"]},
    ):
        assert status(**bad).status_code == 400
    assert braze.subscription_state("grp-1", "u3") is None


def test_unknown_subscription_group_when_groups_are_configured() -> None:
    server, client = served(BrazeEmulator(subscription_groups={"grp-1"}))
    with server, client:
        body = {"subscription_group_id": "grp-9", "subscription_state": "subscribed", "external_ids": ["u1"]}
        resp = client.post("/v2/subscription/status/set", json={"subscription_groups": [body]})
        assert resp.status_code == 400 and "not found" in resp.json()["message"]


# --- /catalogs/{name}/items ------------------------------------------------------------
def test_catalog_items_crud(braze: BrazeEmulator, client: httpx.Client) -> None:
    url = "/catalogs/products/items"

    def call(method: str, *items: dict[str, Any]) -> httpx.Response:
        return client.request(method, url, json={"items": list(items)})

    assert call("POST", {"id": "sku-1", "name": "Mug", "price": 9}).status_code == 202
    again = call("POST", {"id": "sku-1", "name": "Mug"})
    assert again.status_code == 400 and again.json()["errors"][0]["id"] == "item-already-exists"
    assert call("PUT", {"id": "sku-1", "name": "Big mug"}, {"id": "sku-2", "name": "Cup"}).json() == {"message": "success"}
    assert braze.catalog_items("products")["sku-1"] == {"id": "sku-1", "name": "Big mug"}  # replaced whole
    assert call("PATCH", {"id": "sku-2", "price": 3}).status_code == 202
    assert braze.catalog_items("products")["sku-2"] == {"id": "sku-2", "name": "Cup", "price": 3}
    missing = call("PATCH", {"id": "sku-9", "price": 3})
    assert missing.status_code == 404 and missing.json()["errors"][0]["parameter_values"] == ["sku-9"]
    assert call("DELETE", {"id": "sku-1"}, {"id": "sku-gone"}).status_code == 202
    assert sorted(braze.catalog_items("products")) == ["sku-2"]
    assert braze.summary()["catalogs"] == {"products": 1}


def test_unknown_catalog_is_404_until_created(braze: BrazeEmulator, client: httpx.Client) -> None:
    resp = client.put("/catalogs/shoes/items", json={"items": [{"id": "s1"}]})
    assert resp.status_code == 404
    assert resp.json() == {
        "message": "Invalid Request",
        "errors": [
            {
                "id": "catalog-not-found",
                "message": "Could not find catalog",
                "parameters": ["catalog_name"],
                "parameter_values": ["shoes"],
            }
        ],
    }
    braze.create_catalog("shoes", ["size"])
    assert client.put("/catalogs/shoes/items", json={"items": [{"id": "s1", "size": 42}]}).status_code == 202
    assert braze.catalog_items("shoes") == {"s1": {"id": "s1", "size": 42}}
    with pytest.raises(KeyError, match="shoes"):
        braze.catalog_items("hats")


FINE = {"id": "fine", "name": "ok"}  # a valid item, listed first: it must not be applied either


@pytest.mark.parametrize(
    ("method", "items", "error_id"),
    [
        ("PUT", [FINE, {"id": "has space"}], "invalid-ids"),
        ("PUT", [FINE, {"id": "a/b"}], "invalid-ids"),
        ("PUT", [FINE, {"id": "x" * 251}], "ids-too-large"),
        ("PUT", [FINE, {"id": 7}], "ids-not-strings"),
        ("PUT", [FINE, {"name": "no id"}], "items-missing-ids"),
        ("PUT", [FINE, {"id": "a"}, {"id": "a"}], "ids-not-unique"),
        ("PUT", [FINE, {"id": "a", "colour": "red"}], "invalid-fields"),
        ("PATCH", [{"id": "keep", "name": "new"}, {"id": "nope"}], "item-not-found"),
        ("DELETE", [{"id": "keep"}, {"id": "a", "name": "x"}], "invalid-fields"),
        ("PUT", [], "item-array-invalid"),
        ("PUT", [FINE, "not an object"], "item-array-invalid"),
        ("PUT", [{"id": f"i{n}"} for n in range(51)], "request-includes-too-many-items"),
    ],
)
def test_catalog_item_problems_fail_the_whole_request(
    braze: BrazeEmulator, client: httpx.Client, method: str, items: list[Any], error_id: str
) -> None:
    client.put("/catalogs/products/items", json={"items": [{"id": "keep", "name": "old"}]})
    resp = client.request(method, "/catalogs/products/items", json={"items": items})
    assert resp.status_code == (404 if error_id == "item-not-found" else 400)
    assert resp.json()["message"] == "Invalid Request"
    assert [e["id"] for e in resp.json()["errors"]] == [error_id]
    assert braze.catalog_items("products") == {"keep": {"id": "keep", "name": "old"}}


# --- rate limits, faults, state ---------------------------------------------------------
def test_rate_limit_headers_and_429() -> None:
    server, client = served(BrazeEmulator(rate_limit=RateLimit(requests=2, per_seconds=60)))
    with server, client:
        responses = [track(client, attributes=[{"external_id": "u1"}]) for _ in range(3)]
    assert [r.status_code for r in responses] == [201, 201, 429]
    assert [r.headers["X-RateLimit-Remaining"] for r in responses] == ["1", "0", "0"]
    assert {r.headers["X-RateLimit-Limit"] for r in responses} == {"2"}
    reset = int(responses[2].headers["X-RateLimit-Reset"])
    assert time.time() < reset <= time.time() + 61
    assert 1 <= int(responses[2].headers["Retry-After"]) <= 60


def test_injected_rejections_are_per_object_errors() -> None:
    emulator = BrazeEmulator(faults=Faults(reject_rate=0.5, seed=3))
    server, client = served(emulator)
    with server, client:
        body = track(client, attributes=[{"external_id": f"u{i}"} for i in range(40)]).json()
    rejected = {e["index"] for e in body["errors"]}
    assert {e["type"] for e in body["errors"]} == {"injected rejection"}
    assert 0 < len(rejected) < 40 and body["attributes_processed"] == 40 - len(rejected)
    assert set(emulator.users()) == {f"u{i}" for i in range(40) if i not in rejected}


def test_dump_and_load_round_trip(tmp_path: Path, braze: BrazeEmulator, client: httpx.Client) -> None:
    track(
        client,
        attributes=[{"external_id": "u1", "email": "a@b.co", "tags": ["x"]}],
        events=[{"external_id": "u1", "name": "e", "time": "2024-05-01T12:00:00Z"}],
    )
    client.put("/catalogs/products/items", json={"items": [{"id": "p1", "name": "Mug"}]})
    group = {"subscription_group_id": "g", "subscription_state": "subscribed", "external_ids": ["u1"]}
    client.post("/v2/subscription/status/set", json={"subscription_groups": [group]})
    braze.create_catalog("extra", ["f"])

    state = tmp_path / "braze.json"
    state.write_bytes(orjson.dumps(braze.dump()))
    restored = BrazeEmulator(state_path=state)  # no catalogs configured: they come from the state
    assert restored.dump() == braze.dump()
    assert restored.summary() == braze.summary()
    assert restored.subscription_state("g", "u1") == "subscribed"
    # indexes are rebuilt: the email still finds u1, new ids do not collide
    restored.handle(_post("/users/track", {"attributes": [{"email": "a@b.co", "plan": "pro"}, {"external_id": "u2"}]}))
    assert restored.user("u1")["plan"] == "pro"  # type: ignore[index]
    assert restored.user("u2")["braze_id"] != restored.user("u1")["braze_id"]  # type: ignore[index]
    restored.reset()  # back to what the constructor configured: nothing at all
    assert restored.summary() == {
        "users": 0, "profiles": 0, "events": 0, "purchases": 0, "subscription_groups": {}, "catalogs": {}
    }


def test_a_configured_catalog_restored_from_state_keeps_its_items_and_gains_configured_fields(tmp_path: Path) -> None:
    state = tmp_path / "braze.json"
    first = BrazeEmulator(state_path=state, catalogs={"products": ["title"]})
    first.handle(Request.build("PUT", "/catalogs/products/items", {**KEY, "Content-Type": "application/json"},
                               orjson.dumps({"items": [{"id": "p1", "title": "Mug"}]})))
    first.save()
    grown = BrazeEmulator(state_path=state, catalogs={"products": ["title", "colour"]})
    assert grown.dump()["catalogs"] == {"products": {"fields": ["colour", "title"], "items": {"p1": {"id": "p1", "title": "Mug"}}}}
    answer = grown.handle(Request.build("PATCH", "/catalogs/products/items", {**KEY, "Content-Type": "application/json"},
                                        orjson.dumps({"items": [{"id": "p1", "colour": "red"}]})))
    assert answer.status == 202 and grown.catalog_items("products")["p1"] == {"id": "p1", "title": "Mug", "colour": "red"}


def _post(path: str, body: Any) -> Request:
    return Request.build("POST", path, {**KEY, "Content-Type": "application/json"}, orjson.dumps(body))


def test_a_full_batch_is_handled_quickly() -> None:
    emulator = BrazeEmulator()
    objects = [
        {"external_id": f"u{i}", "email": f"u{i}@example.com", "country": "US", "dob": "1990-01-31",
         "time_zone": "Europe/Berlin", "tags": {"add": ["a", "b"]}, "plan": "pro", "seats": i}
        for i in range(75)
    ]
    request = _post("/users/track", {"attributes": objects})
    emulator.handle(request)  # warm the time zone cache
    start = time.perf_counter()
    for _ in range(20):
        assert emulator.handle(request).status == 201
    per_object = (time.perf_counter() - start) / (20 * 75)
    assert per_object < 0.0005, f"{per_object * 1e6:.0f} µs per object"


def test_country_codes_match_the_tz_database_list() -> None:
    table = Path("/usr/share/zoneinfo/iso3166.tab")
    if not table.exists():
        pytest.skip("no tz database country table on this system")
    codes = {line.split("\t")[0] for line in table.read_text().splitlines() if line and not line.startswith("#")}
    assert codes == fmt.COUNTRY_CODES
