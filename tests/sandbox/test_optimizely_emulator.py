"""The strict Optimizely emulator: REST v2 (list attributes, attributes, custom events, audiences)
and the Event API, over real loopback HTTP."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from reverse_etl.sandbox import Faults, RateLimit, SandboxServer, emulator_class
from reverse_etl.sandbox.optimizely import OptimizelyEmulator

WEB = 1000
FEATURE = 1001
AUTH = {"Authorization": "Bearer sandbox-key"}
NOW_MS = int(time.time() * 1000)


class Api:
    """One emulator served on loopback, with a REST client and an Event API client."""

    def __init__(self, emulator: OptimizelyEmulator) -> None:
        self.emulator = emulator
        self.server = SandboxServer(emulator).start()
        self.rest = httpx.Client(base_url=f"{self.server.url}/v2", headers=AUTH)
        self.events_url = f"{self.server.url}/v1/events"
        self.raw = httpx.Client(base_url=self.server.url)

    def close(self) -> None:
        self.rest.close()
        self.raw.close()
        self.server.stop()

    def post_events(self, body: Any) -> httpx.Response:
        return self.raw.post(self.events_url, json=body)


def make(**options: Any) -> OptimizelyEmulator:
    options.setdefault("projects", {WEB: "web", FEATURE: "custom"})
    return OptimizelyEmulator(**options)


@pytest.fixture(scope="module")
def shared() -> Iterator[Api]:
    # One server for the module: stopping a server waits out its 0.5 s poll interval.
    served = Api(make())
    yield served
    served.close()


@pytest.fixture
def api(shared: Api) -> Api:
    shared.emulator.reset()
    return shared


def new_list(api: Api, name: str = "vip_users", **extra: Any) -> httpx.Response:
    body = {"project_id": WEB, "name": name, "key_field": "user_id", "list_type": "cookies", **extra}
    return api.rest.post("/list_attributes", json=body)


def batch(*events: dict[str, Any], visitor_id: str = "v1", **top: Any) -> dict[str, Any]:
    return {
        "account_id": "2000",
        "project_id": str(WEB),
        "anonymize_ip": True,
        "client_name": "retl",
        "client_version": "0.1.0",
        "enrich_decisions": True,
        "visitors": [{"visitor_id": visitor_id, "snapshots": [{"decisions": [], "events": list(events)}]}],
        **top,
    }


def event(**fields: Any) -> dict[str, Any]:
    return {"entity_id": "42", "key": "purchase", "timestamp": NOW_MS, "uuid": str(uuid.uuid4()), **fields}


def assert_error(response: httpx.Response, status: int, needle: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"code", "message", "uuid"}
    uuid.UUID(body["uuid"])
    assert needle in body["message"]


# --- auth and routing ------------------------------------------------------------------------
def test_rest_requires_the_bearer_token(api: Api) -> None:
    no_token = api.raw.get("/v2/attributes", params={"project_id": WEB})
    wrong = api.raw.get(
        "/v2/attributes", params={"project_id": WEB}, headers={"Authorization": "Bearer nope"}
    )
    right = api.rest.get("/attributes", params={"project_id": WEB})
    assert_error(no_token, 401, "Authentication failed")
    assert no_token.json()["code"] == "UNAUTHORIZED"
    assert_error(wrong, 401, "Authentication failed")
    assert right.status_code == 200 and right.json() == []


def test_unknown_paths_404_and_wrong_methods_405(api: Api) -> None:
    assert_error(api.rest.get("/nope"), 404, "no such endpoint")
    assert_error(api.raw.get("/v3/attributes"), 404, "no such endpoint")
    put = api.rest.put("/attributes", json={})
    assert_error(put, 405, "PUT is not allowed")
    assert put.headers["Allow"] == "GET, POST"
    get_events = api.raw.get("/v1/events")
    assert get_events.status_code == 405 and "error" in get_events.json()
    assert_error(api.rest.get("/attributes/999"), 404, "not found")


def test_unknown_project_is_refused(api: Api) -> None:
    assert_error(api.rest.get("/attributes", params={"project_id": 5}), 400, "not a project")
    assert_error(api.rest.post("/attributes", json={"project_id": 5, "key": "plan"}), 400, "not a project")
    assert_error(api.rest.post("/projects/5/custom_events", json={"key": "x"}), 404, "project 5")
    assert_error(api.rest.get("/attributes"), 400, "project_id query parameter is required")
    assert_error(api.rest.get("/attributes", params={"project_id": "²"}), 400, "must be an integer")
    assert_error(api.rest.get("/attributes/²"), 404, "no such endpoint")
    assert api.rest.get(f"/projects/{FEATURE}").json()["platform"] == "custom"


# --- list attributes -----------------------------------------------------------------------
def test_create_list_attribute_returns_metadata_with_an_id(api: Api) -> None:
    created = new_list(api, description="VIPs", list_content="u1,u2,u1,u3")
    assert created.status_code == 201
    body = created.json()
    assert isinstance(body["id"], int) and body["archived"] is False and body["last_modified"]
    assert body["name"] == "vip_users" and body["key_field"] == "user_id" and body["list_type"] == "cookies"
    assert "list_content" not in body  # metadata only; members are not echoed
    assert api.emulator.list_members("vip_users") == ["u1", "u2", "u3"]  # an ordered set
    assert api.rest.get(f"/list_attributes/{body['id']}").json() == body


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"name": "vip users"}, "may only contain"),
        ({"name": "vip.users"}, "may only contain"),
        ({"name": ""}, "must not be empty"),
        ({"key_field": ""}, "key_field must not be empty"),
        ({"list_type": "emails"}, "not one of"),
        ({"list_content": "a,,b"}, "empty value at position 2"),
        ({"list_content": "a,b,"}, "empty value at position 3"),
        ({"list_content": "a, b"}, "surrounding whitespace"),
        ({"list_content": ["a", "b"]}, "comma-separated"),
        ({"project_id": "1000"}, "must be an integer"),
        ({"project_id": FEATURE}, "only in Web projects"),
        ({"id": 7}, "unknown field(s): id"),
    ],
)
def test_list_attribute_validation(api: Api, extra: dict[str, Any], needle: str) -> None:
    assert_error(new_list(api, **extra), 400, needle)
    assert api.emulator.list_attribute(extra.get("name", "vip_users")) is None


def test_list_attribute_needs_its_required_fields(api: Api) -> None:
    response = api.rest.post("/list_attributes", json={"project_id": WEB, "name": "x"})
    assert_error(response, 400, "missing required field(s): key_field, list_type")


def test_list_attributes_exist_only_in_web_projects(api: Api) -> None:
    assert_error(
        api.rest.get("/list_attributes", params={"project_id": FEATURE}), 400, "only in Web projects"
    )


def test_list_content_is_capped_by_max_list_bytes() -> None:
    served = Api(make(max_list_bytes=10))
    try:
        assert new_list(served, list_content="a" * 10).status_code == 201
        assert_error(new_list(served, name="big", list_content="a" * 11), 400, "at most 10 allowed")
    finally:
        served.close()


def test_duplicate_list_name_in_a_project_is_refused_even_when_archived(api: Api) -> None:
    first = new_list(api).json()
    assert_error(new_list(api), 400, "already used")
    assert api.rest.delete(f"/list_attributes/{first['id']}").status_code == 204
    assert_error(new_list(api), 400, "(archived)")
    # the way back is to restore the archived one
    full = {"project_id": WEB, "name": "vip_users", "key_field": "user_id", "list_type": "cookies"}
    restored = api.rest.patch(
        f"/list_attributes/{first['id']}", json={**full, "archived": False, "list_content": "a"}
    )
    assert restored.status_code == 200 and restored.json()["archived"] is False
    assert api.emulator.list_members("vip_users") == ["a"]


def test_patch_list_content_replaces_the_whole_list(api: Api) -> None:
    created = new_list(api, list_content="a,b,c").json()
    full = {"project_id": WEB, "name": "vip_users", "key_field": "user_id", "list_type": "cookies"}
    replaced = api.rest.patch(f"/list_attributes/{created['id']}", json={**full, "list_content": "c,d"})
    assert replaced.status_code == 200
    assert api.emulator.list_members("vip_users") == ["c", "d"]
    # without list_content the members stay; other fields change
    kept = api.rest.patch(
        f"/list_attributes/{created['id']}", json={**full, "key_field": "uid", "description": "x"}
    )
    assert kept.json()["key_field"] == "uid" and kept.json()["description"] == "x"
    assert api.emulator.list_members("vip_users") == ["c", "d"]
    # the empty string empties the list
    api.rest.patch(f"/list_attributes/{created['id']}", json={**full, "list_content": ""})
    assert api.emulator.list_members("vip_users") == []


def test_patch_list_attribute_is_strict_and_all_or_nothing(api: Api) -> None:
    created = new_list(api, list_content="a,b").json()
    url = f"/list_attributes/{created['id']}"
    # the reference requires the same arguments as creating one
    assert_error(api.rest.patch(url, json={"list_content": "z"}), 400, "missing required field(s)")
    full = {"project_id": WEB, "name": "renamed", "key_field": "user_id", "list_type": "cookies"}
    assert_error(api.rest.patch(url, json={**full, "list_content": "z,,y"}), 400, "empty value")
    assert api.emulator.list_members("vip_users") == ["a", "b"]  # nothing applied, not even the rename
    assert api.emulator.list_attribute("renamed") is None


def test_delete_archives_a_list_attribute(api: Api) -> None:
    created = new_list(api, list_content="a").json()
    response = api.rest.delete(f"/list_attributes/{created['id']}")
    assert response.status_code == 204 and response.content == b""
    assert api.rest.get(f"/list_attributes/{created['id']}").json()["archived"] is True
    listed = api.rest.get("/list_attributes", params={"project_id": WEB}).json()
    assert [(o["id"], o["archived"]) for o in listed] == [(created["id"], True)]
    found = api.emulator.list_attribute("vip_users")
    assert found is not None and found["archived"] is True and found["members"] == ["a"]


# --- pagination ----------------------------------------------------------------------------
def test_lists_paginate_with_per_page_at_most_100(api: Api) -> None:
    ids = [
        api.rest.post("/attributes", json={"project_id": WEB, "key": f"k{i}"}).json()["id"] for i in range(5)
    ]
    pages = [
        api.rest.get("/attributes", params={"project_id": WEB, "per_page": 2, "page": p})
        for p in (1, 2, 3, 4)
    ]
    assert [[o["id"] for o in page.json()] for page in pages] == [ids[0:2], ids[2:4], ids[4:5], []]
    assert 'rel="next"' in pages[0].headers["Link"] and "page=2" in pages[0].headers["Link"]
    assert 'rel="next"' not in pages[2].headers["Link"] and 'rel="last"' in pages[2].headers["Link"]
    assert len(api.rest.get("/attributes", params={"project_id": WEB}).json()) == 5  # default page size 25
    assert_error(api.rest.get("/attributes", params={"project_id": WEB, "per_page": 101}), 400, "at most 100")
    assert_error(api.rest.get("/attributes", params={"project_id": WEB, "per_page": 0}), 400, "positive")
    assert_error(api.rest.get("/attributes", params={"project_id": WEB, "page": "x"}), 400, "positive")
    assert api.rest.get("/attributes", params={"project_id": WEB, "per_page": 100}).status_code == 200


# --- attributes ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("key", "needle"),
    [
        ("k" * 65, "at most 64"),
        ("plan$", "may only contain"),
        ("", "must not be empty"),
        (7, "must be a string"),
    ],
)
def test_attribute_key_rules(api: Api, key: Any, needle: str) -> None:
    assert_error(api.rest.post("/attributes", json={"project_id": WEB, "key": key}), 400, needle)
    assert api.emulator.attributes() == []


def test_attribute_lifecycle(api: Api) -> None:
    created = api.rest.post("/attributes", json={"project_id": WEB, "key": "plan tier-1.x_y"})
    assert created.status_code == 201
    attr = created.json()
    assert attr["name"] == "plan tier-1.x_y" and attr["archived"] is False
    assert_error(
        api.rest.post("/attributes", json={"project_id": WEB, "key": "plan tier-1.x_y"}), 400, "already used"
    )
    # the same key in another project is fine
    assert (
        api.rest.post("/attributes", json={"project_id": FEATURE, "key": "plan tier-1.x_y"}).status_code
        == 201
    )
    patched = api.rest.patch(f"/attributes/{attr['id']}", json={"name": "Plan", "description": "d"})
    assert patched.status_code == 200 and patched.json()["name"] == "Plan"
    assert_error(
        api.rest.patch(f"/attributes/{attr['id']}", json={"project_id": FEATURE}), 400, "cannot change"
    )
    assert api.rest.delete(f"/attributes/{attr['id']}").status_code == 204
    assert api.rest.get(f"/attributes/{attr['id']}").json()["archived"] is True
    assert [a["archived"] for a in api.emulator.attributes(WEB)] == [True]


# --- custom events -------------------------------------------------------------------------
def test_custom_event_lifecycle(api: Api) -> None:
    created = api.rest.post(
        f"/projects/{FEATURE}/custom_events",
        json={"key": "order placed", "category": "purchase", "event_type": "custom", "description": "d"},
    )
    assert created.status_code == 201
    ev = created.json()
    assert ev["event_type"] == "custom" and ev["category"] == "purchase" and ev["name"] == "order placed"
    assert_error(
        api.rest.post(f"/projects/{FEATURE}/custom_events", json={"key": "order placed"}), 400, "already"
    )
    listed = api.rest.get("/events", params={"project_id": FEATURE}).json()
    assert [e["id"] for e in listed] == [ev["id"]]
    assert api.rest.get(f"/events/{ev['id']}").json()["key"] == "order placed"
    url = f"/projects/{FEATURE}/custom_events/{ev['id']}"
    assert api.rest.patch(url, json={"name": "Order"}).json()["name"] == "Order"
    assert_error(
        api.rest.patch(f"/projects/{WEB}/custom_events/{ev['id']}", json={"name": "x"}), 404, "not found"
    )
    assert api.rest.delete(url).status_code == 204
    assert api.emulator.custom_events()[0]["archived"] is True


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"key": "k", "category": "checkout"}, "not one of"),
        ({"key": "k", "event_type": "page"}, "not one of"),
        ({"key": "k" * 65}, "at most 64"),
        ({"name": "no key"}, "missing required field(s): key"),
    ],
)
def test_custom_event_validation(api: Api, body: dict[str, Any], needle: str) -> None:
    assert_error(api.rest.post(f"/projects/{WEB}/custom_events", json=body), 400, needle)
    assert api.emulator.custom_events() == []


# --- audiences -----------------------------------------------------------------------------
CONDITIONS = json.dumps(["and", ["or", {"type": "custom_attribute", "name": "plan", "value": "pro"}]])


@pytest.mark.parametrize(
    ("conditions", "needle"),
    [
        (["and", {"type": "custom_attribute", "name": "plan"}], "JSON-encoded string"),
        ("not json", "not valid JSON"),
        (json.dumps(["xor", {"type": "t", "name": "n"}]), 'starting with "and"'),
        (json.dumps({"and": []}), 'starting with "and"'),
        (json.dumps(["and", {"name": "plan"}]), "non-empty string type"),
        (json.dumps(["and", {"type": "custom_attribute"}]), "a name or a value"),
        (json.dumps(["not", {"type": "t", "name": "a"}, {"type": "t", "name": "b"}]), "exactly one operand"),
        (json.dumps(["or", ["xor"]]), "conditions[1]"),
    ],
)
def test_audience_conditions_must_be_a_json_string_of_a_condition_tree(
    api: Api, conditions: Any, needle: str
) -> None:
    response = api.rest.post("/audiences", json={"project_id": WEB, "name": "Pros", "conditions": conditions})
    assert_error(response, 400, needle)
    assert api.emulator.audiences() == []


def test_audience_lifecycle_and_archive(api: Api) -> None:
    created = api.rest.post("/audiences", json={"project_id": WEB, "name": "Pros", "conditions": CONDITIONS})
    assert created.status_code == 201
    aud = created.json()
    assert aud["conditions"] == CONDITIONS and aud["archived"] is False
    other = api.rest.post(
        "/audiences", json={"project_id": WEB, "name": "Others", "conditions": '["or"]'}
    ).json()
    assert_error(api.rest.patch(f"/audiences/{aud['id']}", json={"conditions": ["and"]}), 400, "JSON-encoded")
    renamed = api.rest.patch(f"/audiences/{aud['id']}", json={"name": "Pro plan"})
    assert renamed.json()["name"] == "Pro plan" and renamed.json()["conditions"] == CONDITIONS
    assert api.rest.patch(f"/audiences/{aud['id']}", json={"archived": True}).json()["archived"] is True
    assert api.rest.delete(f"/audiences/{other['id']}").status_code == 204
    assert [(a["name"], a["archived"]) for a in api.emulator.audiences()] == [
        ("Pro plan", True),
        ("Others", True),
    ]


# --- rate limit and injected rejections ----------------------------------------------------
def test_rest_rate_limit_answers_429_and_spares_the_event_api() -> None:
    served = Api(make(rest_rate_limit=RateLimit(requests=2, per_seconds=60)))
    try:
        statuses = [served.rest.get("/attributes", params={"project_id": WEB}).status_code for _ in range(3)]
        throttled = served.rest.post("/attributes", json={"project_id": WEB, "key": "plan"})
        events = [served.post_events(batch(event())).status_code for _ in range(4)]
    finally:
        served.close()
    assert statuses == [200, 200, 429]
    assert_error(throttled, 429, "Rate limit")
    assert throttled.json()["code"] == "TOO_MANY_REQUESTS" and int(throttled.headers["Retry-After"]) >= 1
    assert throttled.headers["X-RateLimit-Remaining"] == "0"
    assert served.emulator.attributes() == []  # the throttled write was not applied
    assert events == [204, 204, 204, 204]


def test_injected_rejections_apply_nothing() -> None:
    served = Api(make(faults=Faults(reject_rate=1.0, seed=1)))
    try:
        write = served.rest.post("/attributes", json={"project_id": WEB, "key": "plan"})
        read = served.rest.get("/attributes", params={"project_id": WEB})
        events = served.post_events(batch(event()))
    finally:
        served.close()
    assert_error(write, 400, "injected")
    assert read.status_code == 200  # reads are never rejected
    assert events.status_code == 400 and "injected" in events.json()["error"]
    assert served.emulator.attributes() == [] and served.emulator.conversion_events() == []


# --- Event API -----------------------------------------------------------------------------
def test_event_api_accepts_a_valid_batch_with_204(api: Api) -> None:
    first = event(revenue=1999, value=2.5, tags={"sku": "A1", "qty": 2})
    body = batch(first, event(key="signup", entity_id="43"))
    body["visitors"][0]["attributes"] = [{"entity_id": "7", "key": "plan", "type": "custom", "value": "pro"}]
    response = api.post_events(body)
    assert response.status_code == 204 and response.content == b""
    stored = api.emulator.conversion_events()
    assert [(e["visitor_id"], e["key"]) for e in stored] == [("v1", "purchase"), ("v1", "signup")]
    assert (
        stored[0]["revenue"] == 1999
        and stored[0]["value"] == 2.5
        and stored[0]["tags"] == {"sku": "A1", "qty": 2}
    )
    assert stored[0]["uuid"] == first["uuid"] and stored[0]["attributes"] == {"plan": "pro"}
    assert api.emulator.summary()["conversion_events"] == 2


def _invalid_batches() -> list[tuple[str, dict[str, Any]]]:
    cases: list[tuple[str, dict[str, Any]]] = [
        ("account_id", batch(event(), account_id="1999")),
        ("project_id", batch(event(), project_id="77")),
        ("enrich_decisions", batch(event(), enrich_decisions=False)),
        ("client_name", batch(event(), client_name="")),
        ("visitors", batch(event(), visitors=[])),
        ("visitor_id", batch(event(), visitor_id="")),
        ("timestamp", batch(event(timestamp=str(NOW_MS)))),
        ("out of range", batch(event(timestamp=NOW_MS // 1000))),  # seconds, not ms
        ("out of range", batch(event(timestamp=NOW_MS + 2 * 86_400_000))),
        ("uuid", batch(event(uuid="not-a-uuid"))),
        ("revenue", batch(event(revenue=19.99))),
        ("value", batch(event(value="2"))),
        ("tags", batch(event(tags={"nested": {"a": 1}}))),
        ("entity_id", batch(event(entity_id=42))),
        ("events", batch()),
    ]
    no_key = event()
    del no_key["key"]
    cases.append(("key", batch(no_key)))
    bad_attr = batch(event())
    bad_attr["visitors"][0]["attributes"] = [
        {"entity_id": "7", "key": "plan", "type": "browser", "value": "x"}
    ]
    cases.append(('"custom"', bad_attr))
    # one bad visitor spoils the whole batch: the good visitor before it is not stored either
    mixed = batch(event())
    mixed["visitors"].append({"visitor_id": "v2", "snapshots": [{"events": [event(uuid="bad")]}]})
    cases.append(("visitors[1]", mixed))
    return cases


@pytest.mark.parametrize(("needle", "body"), _invalid_batches())
def test_event_api_refuses_invalid_batches_storing_nothing(
    api: Api, needle: str, body: dict[str, Any]
) -> None:
    response = api.post_events(body)
    assert response.status_code == 400
    assert needle in response.json()["error"]
    assert api.emulator.conversion_events() == []


def test_event_api_refuses_non_json(api: Api) -> None:
    assert (
        api.raw.post(api.events_url, content=b"{", headers={"Content-Type": "application/json"}).status_code
        == 400
    )
    assert (
        api.raw.post(api.events_url, content=json.dumps(batch(event()))).status_code == 400
    )  # no content type
    assert api.emulator.conversion_events() == []


def test_event_api_refuses_requests_over_3_5_mb(api: Api) -> None:
    limit = int(3.5 * 1024 * 1024)
    padding = "x" * (limit - len(json.dumps(batch(event(tags={"pad": ""})))))
    at_limit = json.dumps(batch(event(tags={"pad": padding}))).encode()
    assert len(at_limit) == limit
    too_big = json.dumps(batch(event(tags={"pad": padding + "x"}))).encode()
    headers = {"Content-Type": "application/json"}
    assert api.raw.post(api.events_url, content=too_big, headers=headers).status_code == 413
    assert api.emulator.conversion_events() == []
    assert api.raw.post(api.events_url, content=at_limit, headers=headers).status_code == 204


def test_event_api_stores_each_entity_uuid_timestamp_once(api: Api) -> None:
    same = event()
    assert api.post_events(batch(same, same)).status_code == 204  # a repeat inside one batch
    assert api.post_events(batch(same, visitor_id="another")).status_code == 204  # a resend
    later = {**same, "timestamp": same["timestamp"] - 1}
    other_event = {**same, "entity_id": "43"}
    assert api.post_events(batch(later, other_event)).status_code == 204
    stored = api.emulator.conversion_events()
    assert [(e["entity_id"], e["timestamp"]) for e in stored] == [
        ("42", same["timestamp"]),
        ("42", same["timestamp"] - 1),
        ("43", same["timestamp"]),
    ]
    assert api.emulator.summary()["duplicates_ignored"] == 2


def test_require_known_events_checks_entity_id_and_key() -> None:
    served = Api(make(require_known_events=True))
    try:
        unknown = served.post_events(batch(event(entity_id="123")))
        created = served.rest.post(f"/projects/{WEB}/custom_events", json={"key": "purchase"}).json()
        wrong_key = served.post_events(batch(event(entity_id=str(created["id"]), key="refund")))
        known = served.post_events(batch(event(entity_id=str(created["id"]))))
    finally:
        served.close()
    assert unknown.status_code == 400 and "not a custom event" in unknown.json()["error"]
    assert wrong_key.status_code == 400 and "does not match" in wrong_key.json()["error"]
    assert known.status_code == 204
    assert len(served.emulator.conversion_events()) == 1


# --- state ---------------------------------------------------------------------------------
def populate(api: Api) -> dict[str, Any]:
    new_list(api, list_content="b,a")
    api.rest.post("/attributes", json={"project_id": WEB, "key": "plan"})
    api.rest.post(f"/projects/{WEB}/custom_events", json={"key": "purchase"})
    api.rest.post("/audiences", json={"project_id": WEB, "name": "Pros", "conditions": CONDITIONS})
    sent = event()
    assert api.post_events(batch(sent, sent)).status_code == 204
    return sent


def test_dump_load_round_trip_keeps_members_dedup_and_ids(tmp_path: Path) -> None:
    state = tmp_path / "optimizely.json"
    first = Api(make(state_path=state))
    try:
        sent = populate(first)
        dumped = first.emulator.dump()
    finally:
        first.close()  # saves to state_path
    assert json.loads(json.dumps(dumped)) == dumped  # JSON-able
    second = Api(make(state_path=state))
    try:
        assert second.emulator.dump() == dumped
        assert second.emulator.list_members("vip_users") == ["b", "a"]
        assert second.post_events(batch(sent)).status_code == 204  # still a duplicate after the restart
        assert len(second.emulator.conversion_events()) == 1
        # new ids do not collide with loaded ones
        new_id = second.rest.post("/attributes", json={"project_id": WEB, "key": "tier"}).json()["id"]
        assert new_id not in {o["id"] for kind in ("list_attributes", "attributes") for o in dumped[kind]}
    finally:
        second.close()


def test_reset_forgets_objects_and_events_but_keeps_projects(api: Api) -> None:
    populate(api)
    api.emulator.reset()
    summary = api.emulator.summary()
    assert summary["list_attributes"] == [] and summary["conversion_events"] == 0
    assert summary["attributes"] == {"live": 0, "archived": 0}
    assert summary["projects"] == {str(WEB): "web", str(FEATURE): "custom"}


def test_summary_counts_live_and_archived(api: Api) -> None:
    populate(api)
    attr = api.rest.post("/attributes", json={"project_id": WEB, "key": "gone"}).json()
    api.rest.delete(f"/attributes/{attr['id']}")
    summary = api.emulator.summary()
    assert summary["attributes"] == {"live": 1, "archived": 1}
    assert summary["list_attributes"] == [
        {"project_id": WEB, "name": "vip_users", "members": 2, "archived": False}
    ]
    assert summary["duplicates_ignored"] == 1


def test_user_shows_list_memberships_and_conversions(api: Api) -> None:
    populate(api)  # vip_users holds "b" and "a"; visitor "v1" converted once
    api.post_events(batch(event(), visitor_id="b"))
    b = api.emulator.user("b")
    assert b is not None
    assert [entry["name"] for entry in b["list_attributes"]] == ["vip_users"]
    assert [e["visitor_id"] for e in b["conversion_events"]] == ["b"]
    v1 = api.emulator.user("v1")
    assert v1 is not None and v1["list_attributes"] == [] and len(v1["conversion_events"]) == 1
    assert api.emulator.user("nobody") is None


def test_registered_and_validates_platforms() -> None:
    assert emulator_class("optimizely") is OptimizelyEmulator
    with pytest.raises(ValueError, match="platform 'mobile'"):
        OptimizelyEmulator(projects={1: "mobile"})
