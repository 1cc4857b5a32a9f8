"""Optimizely Data Platform (ODP, formerly Zaius) REST API v3, emulated strictly for the sandbox.

Serves, under ``/v3``::

    GET  /v3/profiles?<identifier>=<value>   read one profile (private key)
    POST /v3/profiles                        upsert profiles: {"attributes": {...}} or an array of them
    POST /v3/events                          events: {"type", "action"?, "identifiers", "data"?}
    POST /v3/objects/{object_name}           upsert records keyed by the object's primary key
    GET  /v3/lists                           the lists (private key)
    POST /v3/lists                           create a list: {"name"} (private key)
    POST /v3/lists/subscriptions             subscribe / unsubscribe identifiers (private key)

Where ODP's docs leave room, the emulator takes the strict reading, so a writer that passes here
does not trip over the real API:

- A batch is all or nothing. One invalid item fails the request with 400 and ``detail.invalids``
  names every invalid item (``{"index", "message"}``; ``{"event", "message"}`` for events;
  ``{"index", "field", "reason"}`` for schema errors); nothing in the request is applied.
  Injected rejects (``Faults.reject_rate``) count as invalid items the same way.
- An empty array is a 400, as is an array over ``max_batch``; a body that is not JSON is a 400;
  a Content-Type other than ``application/json`` is a 415.
- Identifier values are non-empty strings (``email`` must look like an address); attribute and data
  values are scalars (no nested objects or arrays); ``null`` clears a field (an identifier too,
  as long as the item keeps another one to find the profile by).
- ``data.ts`` is epoch *seconds*: a value above 1e11 is refused as milliseconds sent by mistake.
- A request naming identifiers of two existing profiles merges them into the older one, the way
  ODP's identity resolution joins a person's identifiers.
- A list subscription names exactly one identifier; subscribing creates the profile, unsubscribing
  an unknown identifier is a no-op. Both are idempotent.
- Rate limits are per endpoint (``profiles``, ``events``, ``objects``, ``lists``): ODP documents
  10 requests/s for profiles and lists and no limit for events and objects.
- Checks run in this order: path (404), method (405), API key (401 / 403), rate limit (429), body.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from functools import partial
from http import HTTPStatus
from pathlib import Path
from typing import Any

import orjson

from reverse_etl.sandbox._formats import is_email
from reverse_etl.sandbox.base import Emulator, Faults, RateLimit, _Window
from reverse_etl.sandbox.http import BadJson, Request, Response

__all__ = ["DEFAULT_IDENTIFIER_FIELDS", "DEFAULT_OBJECTS", "DEFAULT_RATE_LIMITS", "ENDPOINTS", "OdpEmulator", "list_id_for"]

DEFAULT_IDENTIFIER_FIELDS = frozenset({"email", "vuid", "customer_id", "fs_user_id"})
DEFAULT_OBJECTS: dict[str, str] = {"products": "product_id"}
ENDPOINTS = ("profiles", "events", "objects", "lists")
DEFAULT_RATE_LIMITS: dict[str, RateLimit] = {
    "profiles": RateLimit(requests=10, per_seconds=1.0),
    "lists": RateLimit(requests=10, per_seconds=1.0),
}

_FIELD = re.compile(r"[a-z0-9_]+")  # ODP field names are lower snake case
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_NON_ALNUM = re.compile(r"[^a-z0-9]")
_MAX_EPOCH_SECONDS = 100_000_000_000  # year 5138; larger values are epoch milliseconds
_EVENT_KEYS = frozenset({"type", "action", "identifiers", "data"})
_SUBSCRIPTION_KEYS = frozenset({"list_id", "subscribed"})

# What an item check returns: None when valid, else a message or a schema entry {"field", "reason"}.
_Problem = str | dict[str, str] | None
_Handler = Callable[[Request], Response]


def list_id_for(name: str) -> str:
    """The list id ODP derives from a list name: lower-cased, every non-[a-z0-9] char turned into ``_``."""
    return _NON_ALNUM.sub("_", name.lower())


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _error(status: int, message: str, detail: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> Response:
    """ODP's error body, used for every non-2xx answer."""
    body = {"title": HTTPStatus(status).phrase, "status": status, "timestamp": _now(), "message": message}
    return Response.json(status, {**body, "detail": detail or {}}, headers)


def _accepted() -> Response:
    return Response.json(202, {"title": "Accepted", "status": 202, "timestamp": _now()})


def _retry_after(reset: float) -> str:
    """Whole seconds until ``reset`` (an epoch time), at least 1."""
    return str(max(1, int(reset - time.time() + 0.999)))


class OdpEmulator(Emulator):
    """The ODP REST API v3, strict about what it accepts, with state tests can assert on.

    ``api_key`` is the private key (everything); ``public_key``, if set, may write profiles,
    events and objects but gets 403 on lists and reads. ``max_batch`` caps array bodies.
    ``identifier_fields`` are the profile identifiers; ``profile_fields`` is the known customer
    schema (``None`` accepts any well-formed field). ``objects`` maps object name to primary key
    field. ``rate_limits`` maps an endpoint of :data:`ENDPOINTS` to its limit (``None`` means
    ODP's documented ones, ``{}`` none). ``rate_limit`` is the base class's global limit.
    """

    name = "odp"

    def __init__(
        self,
        *,
        api_key: str | None = None,
        public_key: str | None = None,
        faults: Faults | None = None,
        rate_limit: RateLimit | None = None,
        rate_limits: dict[str, RateLimit] | None = None,
        state_path: Path | str | None = None,
        max_batch: int = 500,
        identifier_fields: Iterable[str] | None = None,
        profile_fields: Iterable[str] | None = None,
        objects: dict[str, str] | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        limits = dict(DEFAULT_RATE_LIMITS if rate_limits is None else rate_limits)
        unknown = sorted(set(limits) - set(ENDPOINTS))
        if unknown:
            raise ValueError(f"rate_limits for unknown endpoints {unknown}; known: {', '.join(ENDPOINTS)}")
        idents = frozenset(DEFAULT_IDENTIFIER_FIELDS if identifier_fields is None else identifier_fields)
        object_keys = dict(DEFAULT_OBJECTS if objects is None else objects)
        for field in (*idents, *object_keys, *object_keys.values()):
            if not _FIELD.fullmatch(field):
                raise ValueError(f"ODP names are lower snake case ([a-z0-9_]+), got {field!r}")
        if not idents:
            raise ValueError("identifier_fields must name at least one identifier")
        self.public_key = public_key
        self.max_batch = max_batch
        self.identifier_fields = idents
        self.profile_fields = None if profile_fields is None else frozenset(profile_fields)
        self.object_keys = object_keys
        self.rate_limits = limits
        self._windows = {endpoint: _Window(limit) for endpoint, limit in limits.items()}
        self._ident_names = ", ".join(sorted(idents))
        # the base constructor calls reset() and load(), which need the settings above
        super().__init__(api_key=api_key, faults=faults, rate_limit=rate_limit, state_path=state_path)

    # --- state ---------------------------------------------------------------------------
    def reset(self) -> None:
        """Empty the emulator's state (rate-limit windows are traffic, not state, and stay)."""
        self._profiles: dict[str, dict[str, Any]] = {}
        self._index: dict[str, dict[str, str]] = {f: {} for f in self.identifier_fields}
        self._next_id = 1
        self._events: list[dict[str, Any]] = []
        self._idempotence_ids: set[str] = set()
        self.duplicates_ignored = 0
        self._objects: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in self.object_keys}
        self._lists: dict[str, dict[str, str]] = {}  # list_id -> {"name", "created_at"}
        self._members: dict[str, set[tuple[str, str]]] = {}  # list_id -> {(identifier field, value)}

    def dump(self) -> dict[str, Any]:
        """The whole state as a deep, JSON-able copy."""
        with self.lock:
            raw = {
                "profiles": self._profiles,
                "next_profile_id": self._next_id,
                "events": self._events,
                "idempotence_ids": sorted(self._idempotence_ids),
                "duplicates_ignored": self.duplicates_ignored,
                "objects": self._objects,
                "lists": {
                    list_id: {**meta, "members": sorted([f, v] for f, v in self._members[list_id])}
                    for list_id, meta in self._lists.items()
                },
            }
            # a round trip through JSON both proves the state is JSON-able and cuts all aliasing
            result: dict[str, Any] = orjson.loads(orjson.dumps(raw))
            return result

    def load(self, data: dict[str, Any]) -> None:
        """Restore state written by :meth:`dump`; identifier indexes are rebuilt from the profiles."""
        data = orjson.loads(orjson.dumps(data))
        with self.lock:
            self.reset()
            self._profiles = data.get("profiles", {})
            self._next_id = int(data.get("next_profile_id", len(self._profiles) + 1))
            for pid, attrs in self._profiles.items():
                for field, index in self._index.items():
                    if attrs.get(field) is not None:
                        index[attrs[field]] = pid
            self._events = data.get("events", [])
            self._idempotence_ids = set(data.get("idempotence_ids", []))
            self.duplicates_ignored = int(data.get("duplicates_ignored", 0))
            self._objects.update(data.get("objects", {}))
            for list_id, meta in data.get("lists", {}).items():
                self._lists[list_id] = {"name": meta["name"], "created_at": meta["created_at"]}
                self._members[list_id] = {(f, v) for f, v in meta.get("members", [])}

    # --- read helpers (tests, `retl sandbox show odp`) -----------------------------------
    def profile(self, identifier_field: str, value: str) -> dict[str, Any] | None:
        """The attributes of the profile known by ``identifier_field == value``, or None."""
        with self.lock:
            pid = self._index.get(identifier_field, {}).get(value)
            return None if pid is None else dict(self._profiles[pid])

    def user(self, value: str) -> dict[str, Any] | None:
        """The profile any identifier field of which equals ``value`` (``retl sandbox show odp --user``)."""
        with self.lock:
            for index in self._index.values():
                if value in index:
                    return dict(self._profiles[index[value]])
            return None

    def profiles(self) -> list[dict[str, Any]]:
        """Every profile's attributes, oldest first."""
        with self.lock:
            return [dict(attrs) for attrs in self._profiles.values()]

    def events(self) -> list[dict[str, Any]]:
        """Stored events in arrival order (duplicates by ``idempotence_id`` are not stored)."""
        with self.lock:
            result: list[dict[str, Any]] = orjson.loads(orjson.dumps(self._events))
            return result

    def lists(self) -> dict[str, str]:
        """list_id -> name."""
        with self.lock:
            return {list_id: meta["name"] for list_id, meta in self._lists.items()}

    def list_members(self, list_id: str) -> set[str]:
        """The identifier values subscribed to ``list_id``; KeyError names the known lists."""
        with self.lock:
            if list_id not in self._members:
                raise KeyError(f"no list {list_id!r}; known: {', '.join(sorted(self._lists)) or 'none'}")
            return {value for _, value in self._members[list_id]}

    def object_records(self, name: str) -> dict[str, dict[str, Any]]:
        """Primary key -> record for object ``name``; KeyError names the known objects."""
        with self.lock:
            if name not in self._objects:
                raise KeyError(f"no object {name!r}; known: {', '.join(sorted(self._objects))}")
            return {key: dict(record) for key, record in self._objects[name].items()}

    def summary(self) -> dict[str, Any]:
        """Counts of everything held, for ``retl sandbox show odp``."""
        with self.lock:
            return {
                "profiles": len(self._profiles),
                "events": len(self._events),
                "duplicate_events_ignored": self.duplicates_ignored,
                "objects": {name: len(records) for name, records in self._objects.items()},
                "lists": {list_id: len(self._members[list_id]) for list_id in self._lists},
            }

    # --- answers the base class builds ---------------------------------------------------
    def throttled(self, reset: float) -> Response:
        """429 in ODP's error format, with Retry-After (ODP documents no rate-limit headers)."""
        return _error(429, "Too Many Requests: slow down and retry", headers={"Retry-After": _retry_after(reset)})

    def server_error(self) -> Response:
        return _error(503, "Service Unavailable (injected fault)")

    # --- routing -------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        """Route, authenticate, rate-limit, then answer one request (under ``self.lock``)."""
        route = self._route(request.path)
        if route is None:
            return _error(404, f"no such endpoint: {request.method} {request.path}")
        endpoint, methods = route
        handler = methods.get(request.method)
        if handler is None:
            allowed = ", ".join(sorted(methods))
            return _error(405, f"{request.method} not allowed on {request.path}; use {allowed}", headers={"Allow": allowed})
        denied = self._authenticate(request, private_only=endpoint == "lists" or request.method == "GET")
        if denied is not None:
            return denied
        window = self._windows.get(endpoint)
        if window is not None:
            admitted, _, reset = window.admit()
            if not admitted:
                limit = f"{window.limit.requests} requests per {window.limit.per_seconds:g}s"
                message = f"rate limit of {limit} exceeded for /v3/{endpoint}"
                return _error(429, message, headers={"Retry-After": _retry_after(reset)})
        return handler(request)

    def _route(self, path: str) -> tuple[str, dict[str, _Handler]] | None:
        if not path.startswith("/v3/"):
            return None
        match path[4:].split("/"):
            case ["profiles"]:
                return "profiles", {"GET": self._get_profile, "POST": self._post_profiles}
            case ["events"]:
                return "events", {"POST": self._post_events}
            case ["objects", name] if name:
                return "objects", {"POST": partial(self._post_objects, name)}
            case ["lists"]:
                return "lists", {"GET": self._get_lists, "POST": self._post_lists}
            case ["lists", "subscriptions"]:
                return "lists", {"POST": self._post_subscriptions}
        return None

    def _authenticate(self, request: Request, *, private_only: bool) -> Response | None:
        key = request.headers.get("x-api-key")
        if not key:
            return _error(401, "missing x-api-key header")
        if key == self.api_key:
            return None
        if self.public_key is None or key != self.public_key:
            return _error(401, "invalid API key")
        if private_only:
            return _error(403, f"{request.method} {request.path} needs the private API key; this is the public key")
        return None

    # --- request bodies ------------------------------------------------------------------
    def _json(self, request: Request) -> Any:
        """The parsed body, or the error Response to answer with."""
        content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if content_type != "application/json":
            return _error(415, f"Content-Type must be application/json, got {content_type or 'none'!r}")
        if not request.body:
            return _error(400, "request body is empty")
        try:
            return request.json()
        except BadJson as exc:
            return _error(400, f"request body is not valid JSON: {exc}")

    def _batch(self, request: Request) -> list[Any] | Response:
        body = self._json(request)
        if isinstance(body, Response):
            return body
        if isinstance(body, dict):
            return [body]
        if not isinstance(body, list):
            return _error(400, "request body must be a JSON object or an array of objects")
        if not body:
            return _error(400, "request body is an empty array; send at least one object")
        if len(body) > self.max_batch:
            message = f"batch of {len(body)} objects exceeds the limit of {self.max_batch}"
            return _error(400, message, {"batch_size": len(body), "max_batch": self.max_batch})
        return body

    def _validate(self, items: list[Any], check: Callable[[Any], _Problem], key: str = "index") -> Response | None:
        """400 naming every invalid item (the whole batch fails), or None when all are valid."""
        invalids: list[dict[str, Any]] = []
        for i, item in enumerate(items):
            problem = check(item)
            if problem is None and self.should_reject():
                problem = "rejected (injected fault)"
            if isinstance(problem, str):
                invalids.append({key: i, "message": problem})
            elif problem is not None:
                invalids.append({key: i, **problem})
        if not invalids:
            return None
        message = f"{len(invalids)} of {len(items)} objects are invalid; nothing in this request was applied"
        return _error(400, message, {"invalids": invalids})

    def _check_identifier(self, field: str, value: Any) -> str | None:
        if not isinstance(value, str) or not value:
            return f"identifier {field} must be a non-empty string, got {value!r}"
        if field == "email" and not is_email(value):
            return f"identifier email {value!r} is not an email address"
        return None

    def _check_fields(self, fields: dict[str, Any], what: str) -> str | None:
        for field, value in fields.items():
            if not _FIELD.fullmatch(field):
                return f"{what} field name {field!r} must be lower snake case ([a-z0-9_]+)"
            if isinstance(value, dict | list):
                return f"{what} field {field} must be a string, number, boolean or null, not {type(value).__name__}"
        return None

    # --- profiles ------------------------------------------------------------------------
    def _check_profile(self, item: Any) -> _Problem:
        if not isinstance(item, dict) or set(item) != {"attributes"}:
            return 'a profile must be {"attributes": {...}} and nothing else'
        attrs = item["attributes"]
        if not isinstance(attrs, dict) or not attrs:
            return "attributes must be a non-empty object"
        problem = self._check_fields(attrs, "attribute")
        if problem:
            return problem
        has_identifier = False
        for field, value in attrs.items():
            if field in self.identifier_fields:
                if value is None:
                    continue
                problem = self._check_identifier(field, value)
                if problem:
                    return problem
                has_identifier = True
            elif self.profile_fields is not None and field not in self.profile_fields:
                return {"field": field, "reason": "no such field in the customer schema"}
        if not has_identifier:
            return f"attributes need at least one identifier ({self._ident_names}) with a value"
        return None

    def _post_profiles(self, request: Request) -> Response:
        items = self._batch(request)
        if isinstance(items, Response):
            return items
        bad = self._validate(items, self._check_profile)
        if bad is not None:
            return bad
        for item in items:
            self._upsert_profile(item["attributes"])
        return _accepted()

    def _get_profile(self, request: Request) -> Response:
        if len(request.query) != 1 or len(next(iter(request.query.values()))) != 1:
            return _error(400, f"look a profile up by exactly one identifier, e.g. ?email=... ({self._ident_names})")
        ((field, (value,)),) = request.query.items()
        if field not in self.identifier_fields:
            return _error(400, f"{field!r} is not an identifier; use one of {self._ident_names}")
        pid = self._index[field].get(value)
        if pid is None:
            return _error(404, f"no profile with {field} {value!r}")
        return Response.json(200, {"attributes": dict(self._profiles[pid])})

    def _upsert_profile(self, attrs: dict[str, Any]) -> str:
        """Find the profile by any identifier in ``attrs`` (or create it), merge ``attrs`` in."""
        matched: list[str] = []
        for field, index in self._index.items():
            value = attrs.get(field)
            pid = index.get(value) if value is not None else None
            if pid is not None and pid not in matched:
                matched.append(pid)
        if matched:
            matched.sort(key=int)
            pid = matched[0]
            for other in matched[1:]:
                self._merge_profiles(pid, other)
        else:
            pid = str(self._next_id)
            self._next_id += 1
            self._profiles[pid] = {}
        profile = self._profiles[pid]
        for field, value in attrs.items():
            by_value = self._index.get(field)
            if by_value is not None:
                old = profile.get(field)
                if old is not None and old != value and by_value.get(old) == pid:
                    del by_value[old]
                if value is not None:
                    by_value[value] = pid
            if value is None:
                profile.pop(field, None)
            else:
                profile[field] = value
        return pid

    def _merge_profiles(self, into: str, other: str) -> None:
        # identity resolution: the older profile survives; its own values win over the other's
        target = self._profiles[into]
        for field, value in self._profiles.pop(other).items():
            target.setdefault(field, value)
        for index in self._index.values():
            for value, pid in index.items():
                if pid == other:
                    index[value] = into

    # --- events --------------------------------------------------------------------------
    def _check_event(self, event: Any) -> _Problem:
        if not isinstance(event, dict):
            return "an event must be an object"
        extra = event.keys() - _EVENT_KEYS
        if extra:
            return f"unknown event keys {sorted(extra)}; an event has type, action, identifiers, data"
        etype = event.get("type")
        if not isinstance(etype, str) or not etype.strip():
            return "type is required and must be a non-empty string"
        action = event.get("action")
        if action is not None and (not isinstance(action, str) or not action.strip()):
            return "action must be a non-empty string when given"
        identifiers = event.get("identifiers")
        if not isinstance(identifiers, dict):
            return f"identifiers is required: an object with one of {self._ident_names}"
        given = 0
        for field, value in identifiers.items():
            if field not in self.identifier_fields:
                return f"unknown identifier {field!r}; known: {self._ident_names}"
            if value is not None:
                problem = self._check_identifier(field, value)
                if problem:
                    return problem
                given += 1
        if not given:
            return f"identifiers need at least one of {self._ident_names} with a value"
        data = event.get("data", {})
        if not isinstance(data, dict):
            return "data must be an object"
        problem = self._check_fields(data, "data")
        if problem:
            return problem
        ts = data.get("ts")
        if ts is not None:
            if isinstance(ts, bool) or not isinstance(ts, int | float) or ts < 0:
                return f"data.ts must be epoch seconds (a non-negative number), got {ts!r}"
            if ts > _MAX_EPOCH_SECONDS:
                return f"data.ts {ts} looks like epoch milliseconds; ODP expects seconds"
        idempotence_id = data.get("idempotence_id")
        if idempotence_id is not None and (not isinstance(idempotence_id, str) or not _UUID.fullmatch(idempotence_id)):
            return f"data.idempotence_id must be a UUID string, got {idempotence_id!r}"
        return None

    def _post_events(self, request: Request) -> Response:
        items = self._batch(request)
        if isinstance(items, Response):
            return items
        bad = self._validate(items, self._check_event, key="event")
        if bad is not None:
            return bad
        for event in items:
            data = dict(event.get("data") or {})
            idempotence_id = data.get("idempotence_id")
            if idempotence_id is not None:
                seen = idempotence_id.lower()
                if seen in self._idempotence_ids:
                    self.duplicates_ignored += 1  # accepted, as ODP does, but not stored twice
                    continue
                self._idempotence_ids.add(seen)
            identifiers = {f: v for f, v in event["identifiers"].items() if v is not None}
            self._upsert_profile(identifiers)
            stored: dict[str, Any] = {"type": event["type"], "identifiers": identifiers, "data": data}
            if event.get("action") is not None:
                stored["action"] = event["action"]
            self._events.append(stored)
        return _accepted()

    # --- objects -------------------------------------------------------------------------
    def _check_record(self, key_field: str, record: Any) -> _Problem:
        if not isinstance(record, dict) or not record:
            return "a record must be a non-empty object"
        problem = self._check_fields(record, "record")
        if problem:
            return problem
        key = record.get(key_field)
        if isinstance(key, bool) or not isinstance(key, str | int) or key == "":
            return f"primary key {key_field} is required (a non-empty string or an integer), got {key!r}"
        return None

    def _post_objects(self, name: str, request: Request) -> Response:
        key_field = self.object_keys.get(name)
        if key_field is None:
            return _error(404, f"unknown object {name!r}; known: {', '.join(sorted(self.object_keys)) or 'none'}")
        items = self._batch(request)
        if isinstance(items, Response):
            return items
        bad = self._validate(items, partial(self._check_record, key_field))
        if bad is not None:
            return bad
        store = self._objects.setdefault(name, {})
        for record in items:
            current = store.setdefault(str(record[key_field]), {})
            for field, value in record.items():
                if value is None:
                    current.pop(field, None)
                else:
                    current[field] = value
        return _accepted()

    # --- lists ---------------------------------------------------------------------------
    def _get_lists(self, request: Request) -> Response:
        lists = [{"list_id": list_id, **meta} for list_id, meta in self._lists.items()]
        return Response.json(200, {"lists": lists})

    def _post_lists(self, request: Request) -> Response:
        body = self._json(request)
        if isinstance(body, Response):
            return body
        name = body.get("name") if isinstance(body, dict) else None
        if not isinstance(body, dict) or set(body) != {"name"} or not isinstance(name, str) or not name.strip():
            return _error(400, 'body must be {"name": "<list name>"}')
        list_id = list_id_for(name)
        if list_id in self._lists:
            existing = self._lists[list_id]["name"]
            return _error(400, f"list {list_id!r} already exists (named {existing!r})", {"list_id": list_id})
        self._lists[list_id] = {"name": name, "created_at": _now()}
        self._members[list_id] = set()
        return Response.json(200, {"created": {"list_id": list_id, "name": name}})

    def _check_subscription(self, item: Any) -> _Problem:
        if not isinstance(item, dict):
            return "a subscription update must be an object"
        list_id = item.get("list_id")
        if not isinstance(list_id, str) or not list_id:
            return "list_id is required"
        if list_id not in self._lists:
            return f"unknown list_id {list_id!r}; create the list first"
        if not isinstance(item.get("subscribed"), bool):
            return "subscribed must be true or false"
        fields = [k for k in item if k not in _SUBSCRIPTION_KEYS]
        if len(fields) != 1:
            return f"name exactly one identifier ({self._ident_names}), got {sorted(fields)}"
        if fields[0] not in self.identifier_fields:
            return f"unknown identifier {fields[0]!r}; known: {self._ident_names}"
        return self._check_identifier(fields[0], item[fields[0]])

    def _post_subscriptions(self, request: Request) -> Response:
        items = self._batch(request)
        if isinstance(items, Response):
            return items
        bad = self._validate(items, self._check_subscription)
        if bad is not None:
            return bad
        updates: list[dict[str, Any]] = []
        for item in items:
            list_id, subscribed = item["list_id"], item["subscribed"]
            field = next(k for k in item if k not in _SUBSCRIPTION_KEYS)
            value = item[field]
            if subscribed:
                self._members[list_id].add((field, value))
                self._upsert_profile({field: value})
            else:
                self._members[list_id].discard((field, value))
            updates.append({"list_id": list_id, field: value, "subscribed": subscribed})
        return Response.json(200, {"updates": updates})
