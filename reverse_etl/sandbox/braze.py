"""Braze REST API, emulated strictly for the sandbox (the facts: shared/destinations/braze.md).

Serves ``POST /users/track``, ``POST /users/delete``, ``POST /v2/subscription/status/set`` and
``POST | PUT | PATCH | DELETE /catalogs/{name}/items``. Where Braze leaves room the emulator
takes the strict reading, so a writer that passes here does not trip over the real API:

- /users/track judges each object alone: an invalid one is listed in ``errors`` (``type``,
  ``input_array``, ``index``) and not applied, the others are; with no valid object the answer
  is 400. Injected rejects (``Faults.reject_rate``) are such errors, type ``injected rejection``.
- An object names exactly one of ``external_id``, ``user_alias``, ``braze_id``, or else is found
  by ``email`` (failing that ``phone``). Beside one of the three, ``email`` and ``phone`` in an
  attributes object are standard attributes; in an event or purchase, a second identifier.
- Standard attributes keep their formats; strings are at most 255 characters; custom keys at
  most 255 and never start with ``$``. Keys an event, purchase or body does not define are
  refused rather than ignored, to catch typos.
- ``braze_id`` never creates a profile (Braze assigns them), nor does ``_update_existing_only``:
  an unknown user is skipped silently and counts as processed.
- /users/delete answers ``deleted`` = ids queued, found or not, as Braze does. Subscription and
  catalog requests are all-or-nothing. Catalogs must exist (``catalogs=`` or
  :meth:`BrazeEmulator.create_catalog`; a ``sandbox: true`` destination passes the catalogs its
  syncs write, with their mapped fields); deleting an absent item is a no-op, so resends are safe.
- Checks run in this order: path (404), method (405), API key (401), permission (403),
  body size (413), Content-Type (400), JSON (400), then the body itself.

A profile holds its events and purchases under ``events`` and ``purchases`` (aliases under
``user_aliases``), so custom attributes of those names are refused.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import orjson

from reverse_etl.sandbox import _formats as fmt
from reverse_etl.sandbox.base import Emulator, Faults, RateLimit
from reverse_etl.sandbox.http import BadJson, Request, Response

__all__ = ["MAX_BODY_BYTES", "MAX_IDS", "NO_VALID_DATA", "PERMISSIONS", "BrazeEmulator"]

PERMISSIONS = frozenset({"users.track", "users.delete", "subscription.status.set", "catalogs.items"})
MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_IDS = 50  # ids per /users/delete, per subscription group, items per catalog request
NO_VALID_DATA = "Valid data must be provided in the 'attributes', 'events', or 'purchases' fields."

_ARRAYS = ("attributes", "events", "purchases")
_PRIMARY = ("external_id", "user_alias", "braze_id")
_IDENTIFIERS = frozenset({*_PRIMARY, "email", "phone"})
_INDEXED = ("braze_id", "email", "phone")  # profile fields a later request may find a user by
_CONTROL = frozenset({"_update_existing_only", "_merge_objects"})
_RESERVED = frozenset({"events", "purchases", "user_aliases"})
_COMMON_KEYS = _IDENTIFIERS | {"time", "properties", "app_id", "_update_existing_only"}
_EVENT_KEYS = _COMMON_KEYS | {"name"}
_PURCHASE_KEYS = _COMMON_KEYS | {"product_id", "currency", "price", "quantity"}
_ARRAY_OPS = frozenset({"add", "remove"})
_GENDERS = frozenset({"M", "F", "O", "N", "P"})
_SUBSCRIBE_STATES = frozenset({"opted_in", "subscribed", "unsubscribed"})
_GROUP_STATES = frozenset({"subscribed", "unsubscribed"})
_GROUP_IDS = {"external_ids": "external_id", "emails": "email", "phones": "phone"}
_GROUP_KEYS = frozenset({"subscription_group_id", "subscription_state", "use_double_opt_in_logic", *_GROUP_IDS})
_DELETE_IDS = {"external_ids": "external_id", "braze_ids": "braze_id", "user_aliases": "user_alias"}
_NAME = re.compile(r"[A-Za-z0-9_-]{1,250}")  # catalog names and item ids
_CATALOG_ITEMS = re.compile(r"/catalogs/([^/]+)/items")
_CATALOG_METHODS: tuple[str, ...] = ("POST", "PUT", "PATCH", "DELETE")
_POST_ONLY: tuple[str, ...] = ("POST",)
_ROUTES = {
    "/users/track": "users.track",
    "/users/delete": "users.delete",
    "/v2/subscription/status/set": "subscription.status.set",
}
_MAX_TEXT = 255
_MAX_QUANTITY = 100


def _is_str_in(allowed: frozenset[str]) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, str) and value in allowed


# standard attribute -> (format check, what the format is)
_STANDARD: dict[str, tuple[Callable[[Any], bool], str]] = {
    "dob": (fmt.is_date, "a date written YYYY-MM-DD"),
    "country": (fmt.is_country, "an ISO-3166-1 alpha-2 code such as US"),
    "gender": (lambda v: isinstance(v, str) and v.upper() in _GENDERS, "one of M, F, O, N, P"),
    "email": (fmt.is_email, "a valid email address"),
    "email_subscribe": (_is_str_in(_SUBSCRIBE_STATES), "one of opted_in, subscribed, unsubscribed"),
    "push_subscribe": (_is_str_in(_SUBSCRIBE_STATES), "one of opted_in, subscribed, unsubscribed"),
    "time_zone": (fmt.is_timezone, "an IANA time zone name such as America/New_York"),
}

# (kind of identifier, profile key, identifier value), or the reason there is none
_Identity = tuple[str, str, Any]


def _message(status: int, message: str, headers: dict[str, str] | None = None, **extra: Any) -> Response:
    return Response.json(status, {"message": message, **extra}, headers)


def _copy(value: Any) -> Any:
    # a JSON round trip is a fast deep copy and keeps callers from mutating the state
    return orjson.loads(orjson.dumps(value))


def _check_key(key: str, what: str) -> str | None:
    if not key:
        return f"{what} names must not be empty"
    if len(key) > _MAX_TEXT:
        return f"{what} name {key[:40]!r}... is {len(key)} characters; the maximum is {_MAX_TEXT}"
    if key.startswith("$"):
        return f"{what} name {key!r} must not start with '$'"
    return None


def _check_value(key: str, value: Any) -> str | None:
    """Problems with a custom attribute or property value (standard formats are checked apart)."""
    if isinstance(value, str):
        return None if len(value) <= _MAX_TEXT else f"{key}: string values are at most {_MAX_TEXT} characters, got {len(value)}"
    if isinstance(value, list):
        for item in value:
            if isinstance(item, str):
                if len(item) > _MAX_TEXT:
                    return f"{key}: array strings are at most {_MAX_TEXT} characters, got {len(item)}"
            elif not isinstance(item, dict):  # arrays hold strings, or objects (nested attributes)
                return f"{key}: array elements must be strings, got {type(item).__name__}"
        return None
    if isinstance(value, dict) and ("add" in value or "remove" in value):
        if not _ARRAY_OPS.issuperset(value):
            return f"{key}: an array update takes only 'add' and 'remove', got {sorted(value)}"
        for op, items in value.items():
            if not isinstance(items, list) or not all(isinstance(x, str) and len(x) <= _MAX_TEXT for x in items):
                return f"{key}: '{op}' must be an array of strings of at most {_MAX_TEXT} characters"
    return None  # numbers, booleans and nested objects


def _check_attributes(obj: dict[str, Any], identifier: str) -> str | None:
    for key, value in obj.items():
        if key == identifier:
            continue
        if key in _CONTROL:
            if not isinstance(value, bool):
                return f"{key} must be true or false, got {value!r}"
            continue
        if key in _RESERVED:
            return f"attribute {key!r} is reserved by the sandbox (it holds the user's {key})"
        if problem := _check_key(key, "attribute"):
            return problem
        if value is None:  # null removes the field, whatever its format
            continue
        standard = _STANDARD.get(key)
        if standard is not None:
            if not standard[0](value):
                return f"{key} must be {standard[1]}, got {value!r}"
        elif problem := _check_value(key, value):
            return problem
    return None


def _check_common(obj: dict[str, Any], allowed: frozenset[str], what: str) -> str | None:
    unknown = obj.keys() - allowed
    if unknown:
        return f"unknown {what} field(s): {', '.join(sorted(unknown))}"
    if fmt.parse_datetime(obj.get("time")) is None:
        return f"{what} time must be an ISO 8601 date-time such as 2024-05-01T12:00:00Z, got {obj.get('time')!r}"
    if "app_id" in obj and not isinstance(obj["app_id"], str):
        return f"app_id must be a string, got {obj['app_id']!r}"
    if "_update_existing_only" in obj and not isinstance(obj["_update_existing_only"], bool):
        return f"_update_existing_only must be true or false, got {obj['_update_existing_only']!r}"
    if "properties" in obj:
        props = obj["properties"]
        if not isinstance(props, dict):
            return f"{what} properties must be an object, got {type(props).__name__}"
        for key, value in props.items():
            if problem := _check_key(key, "property") or _check_value(key, value):
                return problem
    return None


def _check_event(obj: dict[str, Any], identifier: str) -> str | None:
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        return f"event name must be a non-empty string, got {name!r}"
    if len(name) > _MAX_TEXT:
        return f"event name is {len(name)} characters; the maximum is {_MAX_TEXT}"
    return _check_common(obj, _EVENT_KEYS, "event")


def _check_purchase(obj: dict[str, Any], identifier: str) -> str | None:
    product = obj.get("product_id")
    if not isinstance(product, str) or not product or len(product) > _MAX_TEXT:
        return f"product_id must be a string of 1 to {_MAX_TEXT} characters, got {product!r}"
    if not fmt.is_currency(obj.get("currency")):
        return f"currency must be an ISO 4217 code such as USD, got {obj.get('currency')!r}"
    price = obj.get("price")
    if isinstance(price, bool) or not isinstance(price, int | float):
        return f"price must be a number, got {price!r}"
    if "quantity" in obj:
        quantity = obj["quantity"]
        if isinstance(quantity, bool) or not isinstance(quantity, int) or not 1 <= quantity <= _MAX_QUANTITY:
            return f"quantity must be a whole number from 1 to {_MAX_QUANTITY}, got {quantity!r}"
    return _check_common(obj, _PURCHASE_KEYS, "purchase")


_CHECKS: dict[str, Callable[[dict[str, Any], str], str | None]] = {
    "attributes": _check_attributes,
    "events": _check_event,
    "purchases": _check_purchase,
}


def _identify(obj: dict[str, Any], attributes: bool) -> _Identity | str:
    """Which user an object names, or why it names none (or more than one)."""
    named = [k for k in _PRIMARY if k in obj]
    if not named:
        named = [k for k in ("email", "phone") if k in obj]
        if attributes:
            named = named[:1]  # identified by email, an attributes object may still set phone
    elif not attributes:
        named += [k for k in ("email", "phone") if k in obj]
    if not named:
        return "an object needs an identifier: external_id, user_alias, braze_id, email or phone"
    if len(named) > 1:
        return f"an object takes exactly one identifier, got {' and '.join(named)}"
    kind = named[0]
    value = obj[kind]
    if kind == "user_alias":
        if not (
            isinstance(value, dict)
            and value.keys() == {"alias_name", "alias_label"}
            and all(isinstance(v, str) and v for v in value.values())
        ):
            return "user_alias must be {alias_name, alias_label}, both non-empty strings"
        return kind, "user_alias:" + orjson.dumps([value["alias_label"], value["alias_name"]]).decode(), value
    if not isinstance(value, str) or not value:
        return f"{kind} must be a non-empty string, got {value!r}"
    if kind == "email" and not fmt.is_email(value):
        return f"email must be a valid email address, got {value!r}"
    return kind, f"{kind}:{value}", value


def _dedupe(values: list[Any]) -> list[Any]:
    if all(isinstance(v, str) for v in values):
        return list(dict.fromkeys(values))
    return values  # arrays of objects are kept as sent


class BrazeEmulator(Emulator):
    """The Braze REST API, strict about what it accepts, with state tests can assert on.

    ``permissions`` are the API key's permissions out of :data:`PERMISSIONS` (``None``: all).
    ``max_objects_per_array`` caps each /users/track array and ``max_objects_combined`` (if set)
    their sum. ``catalogs`` maps catalog name to its field names (``id`` is implied);
    ``subscription_groups`` lists the known group ids (``None`` accepts any id).
    """

    name = "braze"

    def __init__(
        self,
        *,
        api_key: str | None = None,
        faults: Faults | None = None,
        rate_limit: RateLimit | None = None,
        state_path: Path | str | None = None,
        permissions: Iterable[str] | None = None,
        max_objects_per_array: int = 75,
        max_objects_combined: int | None = None,
        catalogs: dict[str, list[str]] | None = None,
        subscription_groups: Iterable[str] | None = None,
    ) -> None:
        if permissions is not None:
            permissions = frozenset(permissions)
            unknown = sorted(permissions - PERMISSIONS)
            if unknown:
                raise ValueError(f"unknown Braze permission(s) {unknown}; known: {', '.join(sorted(PERMISSIONS))}")
        if max_objects_per_array < 1 or (max_objects_combined is not None and max_objects_combined < 1):
            raise ValueError("max_objects_per_array and max_objects_combined must be at least 1")
        self.permissions: frozenset[str] | None = permissions
        self.max_objects_per_array = max_objects_per_array
        self.max_objects_combined = max_objects_combined
        self.subscription_groups = None if subscription_groups is None else frozenset(subscription_groups)
        self._configured = {name: _catalog_fields(name, fields) for name, fields in (catalogs or {}).items()}
        # the base constructor calls reset() and load(), which need the settings above
        super().__init__(api_key=api_key, faults=faults, rate_limit=rate_limit, state_path=state_path)

    # --- state ---------------------------------------------------------------------------
    def reset(self) -> None:
        """Back to the constructed state: no users, subscriptions or items; only configured catalogs."""
        self._profiles: dict[str, dict[str, Any]] = {}  # "external_id:u1" / "email:a@b.co" / ...
        self._index: dict[str, dict[str, str]] = {kind: {} for kind in _INDEXED}
        self._next_braze_id = 1
        self._subscriptions: dict[str, dict[str, str]] = {}  # group id -> {"external_id:u1": state}
        self._catalogs: dict[str, frozenset[str]] = dict(self._configured)
        self._items: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in self._catalogs}

    def dump(self) -> dict[str, Any]:
        """The whole state as a deep, JSON-able copy."""
        with self.lock:
            catalogs = {name: {"fields": sorted(f), "items": self._items[name]} for name, f in self._catalogs.items()}
            state = {"profiles": self._profiles, "next_braze_id": self._next_braze_id}
            result: dict[str, Any] = _copy({**state, "subscriptions": self._subscriptions, "catalogs": catalogs})
            return result

    def load(self, data: dict[str, Any]) -> None:
        """Restore state written by :meth:`dump`; the identifier indexes are rebuilt."""
        data = _copy(data)
        with self.lock:
            self.reset()
            self._profiles = data.get("profiles", {})
            self._next_braze_id = int(data.get("next_braze_id", len(self._profiles) + 1))
            self._subscriptions = data.get("subscriptions", {})
            for name, catalog in data.get("catalogs", {}).items():
                # a configured catalog keeps its configured fields (a sync's mapping may have grown)
                self._catalogs[name] = frozenset(catalog["fields"]) | self._configured.get(name, frozenset())
                self._items[name] = catalog["items"]
            for key, profile in self._profiles.items():
                for kind, index in self._index.items():
                    if profile.get(kind) is not None:
                        index[profile[kind]] = key

    def create_catalog(self, name: str, fields: Iterable[str]) -> None:
        """Create (or redefine, keeping its items) the catalog ``name`` with ``fields``."""
        with self.lock:
            self._catalogs[name] = _catalog_fields(name, fields)
            self._items.setdefault(name, {})

    # --- read helpers (tests, `retl sandbox show braze`) ---------------------------------
    def user(self, external_id: str) -> dict[str, Any] | None:
        """The profile with ``external_id``: its attributes plus ``events`` and ``purchases`` lists."""
        with self.lock:
            profile = self._profiles.get(f"external_id:{external_id}")
            return None if profile is None else _copy(profile)

    def users(self) -> dict[str, dict[str, Any]]:
        """Every profile that has an external_id, by external_id."""
        with self.lock:
            return {p["external_id"]: _copy(p) for p in self._profiles.values() if "external_id" in p}

    def profiles(self) -> dict[str, dict[str, Any]]:
        """Every profile, keyed ``external_id:<id>``, ``user_alias:["<label>","<name>"]``, ``email:<address>``
        or ``phone:<number>`` after the identifier that created it."""
        with self.lock:
            result: dict[str, dict[str, Any]] = _copy(self._profiles)
            return result

    def catalog_items(self, name: str) -> dict[str, dict[str, Any]]:
        """Item id -> item of catalog ``name``; KeyError names the known catalogs."""
        with self.lock:
            if name not in self._items:
                raise KeyError(f"no catalog {name!r}; known: {', '.join(sorted(self._items)) or 'none'}")
            result: dict[str, dict[str, Any]] = _copy(self._items[name])
            return result

    def subscription_state(self, group_id: str, external_id: str) -> str | None:
        """``subscribed`` / ``unsubscribed`` for the user in the group, or None if never set."""
        with self.lock:
            return self._subscriptions.get(group_id, {}).get(f"external_id:{external_id}")

    def summary(self) -> dict[str, Any]:
        """Counts of everything held, for ``retl sandbox show braze``."""
        with self.lock:
            profiles = self._profiles.values()
            return {
                "users": sum(1 for p in profiles if "external_id" in p),
                "profiles": len(self._profiles),
                "events": sum(len(p["events"]) for p in profiles),
                "purchases": sum(len(p["purchases"]) for p in profiles),
                "subscription_groups": {
                    group: {state: sum(1 for s in members.values() if s == state) for state in sorted(_GROUP_STATES)}
                    for group, members in self._subscriptions.items()
                },
                "catalogs": {name: len(items) for name, items in self._items.items()},
            }

    # --- HTTP ----------------------------------------------------------------------------
    def rate_limit_headers(self, remaining: int, reset: float) -> dict[str, str]:
        """Braze's ``X-RateLimit-*`` headers; Reset is whole epoch seconds."""
        headers = {"X-RateLimit-Remaining": str(remaining), "X-RateLimit-Reset": str(math.ceil(reset))}
        if self.rate_limit is not None:  # an injected throttle without a limit has none to tell
            headers["X-RateLimit-Limit"] = str(self.rate_limit.requests)
        return headers

    def throttled(self, reset: float) -> Response:
        """429 with ``Retry-After`` and the rate-limit headers (Braze documents no body)."""
        headers = self.rate_limit_headers(0, reset)
        headers["Retry-After"] = str(max(1, math.ceil(reset - time.time())))
        return _message(429, "API rate limit exceeded", headers)

    def handle(self, request: Request) -> Response:
        """Route, authenticate, parse and answer one request (called under ``self.lock``)."""
        catalog, methods = None, _POST_ONLY
        if request.path in _ROUTES:
            permission = _ROUTES[request.path]
        elif match := _CATALOG_ITEMS.fullmatch(request.path):
            permission, methods, catalog = "catalogs.items", _CATALOG_METHODS, unquote(match.group(1))
        else:
            return _message(404, f"No such endpoint: {request.path}")
        if request.method not in methods:
            allowed = ", ".join(methods)
            return _message(405, f"{request.method} is not allowed on {request.path}; use {allowed}", {"Allow": allowed})
        auth = request.headers.get("authorization", "")
        if auth != f"Bearer {self.api_key}":
            # Braze echoes the key; a prefix is enough to tell which one and keeps logs clean
            given = auth.removeprefix("Bearer ").strip()
            return _message(401, f"Invalid API key: {given[:4] + '...' if given else '(none given)'}")
        if self.permissions is not None and permission not in self.permissions:
            return _message(403, f"Access Denied: this API key lacks the {permission} permission")
        if len(request.body) > MAX_BODY_BYTES:
            return _message(413, f"Request body is {len(request.body)} bytes; the limit is {MAX_BODY_BYTES} (4 MB)")
        content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if content_type != "application/json":
            return _message(400, f"Content-Type must be application/json, got {content_type or 'none'}")
        try:
            body = request.json()
        except BadJson as exc:
            return _message(400, f"Received unparseable JSON body: {exc}")
        if catalog is not None:
            return self._catalog_items(request.method, catalog, body)
        if request.path == "/users/track":
            return self._track(body)
        if request.path == "/users/delete":
            return self._delete(body)
        return self._subscription_status(body)

    # --- /users/track --------------------------------------------------------------------
    def _track(self, body: Any) -> Response:
        if not isinstance(body, dict):
            return _message(400, NO_VALID_DATA)
        unknown = sorted(body.keys() - set(_ARRAYS))
        if unknown:
            return _message(400, f"Unknown field(s) {unknown}; a request takes 'attributes', 'events' and 'purchases'")
        present = [name for name in _ARRAYS if name in body]
        for name in present:
            if not isinstance(body[name], list):
                return _message(400, f"'{name}' must be an array of objects")
        limit = self.max_objects_per_array
        over = [
            {"type": f"'{n}' has {len(body[n])} objects; the maximum is {limit}", "input_array": n}
            for n in present
            if len(body[n]) > limit
        ]
        if over:
            return _message(400, f"Too many objects: at most {limit} per array per request", errors=over)
        combined = sum(len(body[n]) for n in present)
        if self.max_objects_combined is not None and combined > self.max_objects_combined:
            return _message(
                400,
                f"Too many objects: {combined} in all; at most {self.max_objects_combined} per request",
                errors=[{"type": "combined object limit exceeded", "input_array": n} for n in present],
            )
        if not combined:
            return _message(400, NO_VALID_DATA)
        errors: list[dict[str, Any]] = []
        answer: dict[str, Any] = {"message": "success"}
        for name in present:
            answer[f"{name}_processed"] = self._track_array(name, body[name], errors)
        if errors and not any(answer[f"{n}_processed"] for n in present):
            return _message(400, NO_VALID_DATA, errors=errors)
        if errors:
            answer["errors"] = errors
        return Response.json(201, answer)

    def _track_array(self, name: str, objects: list[Any], errors: list[dict[str, Any]]) -> int:
        """Apply the valid objects of one array; record the others in ``errors``."""
        check = _CHECKS[name]
        attributes = name == "attributes"
        processed = 0
        for index, obj in enumerate(objects):
            identity = _identify(obj, attributes) if isinstance(obj, dict) else f"{name} entries must be objects"
            problem = identity if isinstance(identity, str) else check(obj, identity[0])
            if problem is None and self.should_reject():
                problem = "injected rejection"
            if problem is not None or isinstance(identity, str):  # the second test narrows the type
                errors.append({"type": problem, "input_array": name, "index": index})
                continue
            processed += 1
            kind, ref, value = identity
            key = self._find(kind, ref, value)
            if key is None:
                if obj.get("_update_existing_only") is True or kind == "braze_id":
                    continue  # Braze skips an unknown user silently here
                key = self._create(kind, ref, value)
            if attributes:
                self._apply_attributes(key, obj, kind)
            else:
                record = {k: v for k, v in obj.items() if k not in _IDENTIFIERS and k not in _CONTROL}
                self._profiles[key][name].append(record)
        return processed

    def _find(self, kind: str, ref: str, value: Any) -> str | None:
        """The key of the existing profile an identifier names."""
        key = self._index[kind].get(value) if kind in self._index else None
        # a profile an email created stays found by it, even after its email attribute changed
        return key or (ref if ref in self._profiles else None)

    def _create(self, kind: str, ref: str, value: Any) -> str:
        braze_id = f"{self._next_braze_id:024x}"  # Braze ids are 24 hex digits
        self._next_braze_id += 1
        profile: dict[str, Any] = {"braze_id": braze_id, "events": [], "purchases": []}
        if kind == "external_id":
            profile["external_id"] = value
        elif kind == "user_alias":
            profile["user_aliases"] = [dict(value)]
        self._profiles[ref] = profile
        self._index["braze_id"][braze_id] = ref
        if kind in ("email", "phone"):
            self._set_indexed(ref, profile, kind, value)
        return ref

    def _set_indexed(self, key: str, profile: dict[str, Any], field: str, value: Any) -> None:
        """Set (or with None remove) ``email`` / ``phone``, keeping the lookup index right."""
        index = self._index[field]
        old = profile.get(field)
        if old is not None and index.get(old) == key:
            del index[old]
        if value is None:
            profile.pop(field, None)
        else:
            profile[field] = value
            index[value] = key

    def _apply_attributes(self, key: str, obj: dict[str, Any], identifier: str) -> None:
        profile = self._profiles[key]
        for field, value in obj.items():
            if field == identifier or field in _CONTROL:
                continue
            if isinstance(value, dict) and value and _ARRAY_OPS.issuperset(value):
                current = profile.get(field)
                items = list(current) if isinstance(current, list) else []
                for item in value.get("add", ()):
                    if item not in items:
                        items.append(item)
                if "remove" in value:
                    drop = set(value["remove"])
                    items = [item for item in items if item not in drop]
                value = items
            elif isinstance(value, list):
                value = _dedupe(value)
            elif field == "gender" and isinstance(value, str):
                value = value.upper()
            if field in self._index:
                self._set_indexed(key, profile, field, value)
            elif value is None:
                profile.pop(field, None)
            else:
                profile[field] = value

    # --- /users/delete -------------------------------------------------------------------
    def _delete(self, body: Any) -> Response:
        if not isinstance(body, dict):
            return _message(400, "The request body must be a JSON object")
        unknown = sorted(body.keys() - _DELETE_IDS.keys())
        if unknown:
            return _message(400, f"Unknown field(s) {unknown}; give {', '.join(_DELETE_IDS)}")
        targets: list[_Identity] = []
        for field, kind in _DELETE_IDS.items():
            ids = body.get(field, [])
            if not isinstance(ids, list):
                return _message(400, f"'{field}' must be an array")
            for value in ids:
                identity = _identify({kind: value}, attributes=True)
                if isinstance(identity, str):
                    return _message(400, f"'{field}': {identity}")
                targets.append(identity)
        if not targets:
            return _message(400, f"No users to delete: give {', '.join(_DELETE_IDS)}")
        if len(targets) > MAX_IDS:
            return _message(400, f"Too many users: {len(targets)}; at most {MAX_IDS} per request")
        for kind, ref, value in targets:
            key = self._find(kind, ref, value)
            if key is not None:
                self._drop(key)
        return Response.json(201, {"deleted": len(targets), "message": "success"})

    def _drop(self, key: str) -> None:
        profile = self._profiles.pop(key)
        for kind, index in self._index.items():
            value = profile.get(kind)
            if value is not None and index.get(value) == key:
                del index[value]

    # --- /v2/subscription/status/set -----------------------------------------------------
    def _subscription_status(self, body: Any) -> Response:
        groups = body.get("subscription_groups") if isinstance(body, dict) else None
        if not isinstance(groups, list) or not groups or body.keys() != {"subscription_groups"}:
            return _message(400, "The body must be {\"subscription_groups\": [...]} with at least one group")
        changes: list[tuple[str, str, list[str]]] = []
        for n, group in enumerate(groups):
            problem = self._check_group(group)
            if problem:
                return _message(400, f"subscription_groups[{n}]: {problem}")
            keys = [f"{kind}:{v}" for field, kind in _GROUP_IDS.items() for v in group.get(field, [])]
            changes.append((group["subscription_group_id"], group["subscription_state"], keys))
        for group_id, state, keys in changes:
            members = self._subscriptions.setdefault(group_id, {})
            members.update(dict.fromkeys(keys, state))
        return _message(201, "success")

    def _check_group(self, group: Any) -> str | None:
        if not isinstance(group, dict):
            return "a group must be an object"
        unknown = sorted(group.keys() - _GROUP_KEYS)
        if unknown:
            return f"unknown field(s) {unknown}"
        group_id = group.get("subscription_group_id")
        if not isinstance(group_id, str) or not group_id:
            return "subscription_group_id must be a non-empty string"
        if self.subscription_groups is not None and group_id not in self.subscription_groups:
            return f"subscription group {group_id!r} not found"
        if not _is_str_in(_GROUP_STATES)(group.get("subscription_state")):
            return f"subscription_state must be subscribed or unsubscribed, got {group.get('subscription_state')!r}"
        total = 0
        for field, kind in _GROUP_IDS.items():
            ids = group.get(field, [])
            if not isinstance(ids, list):
                return f"{field} must be an array"
            for value in ids:
                if not isinstance(value, str) or not value:
                    return f"{field} must hold non-empty strings, got {value!r}"
                if (kind == "email" and not fmt.is_email(value)) or (kind == "phone" and not fmt.is_e164(value)):
                    return f"{value!r} is not a valid {kind} ({'E.164, e.g. +15555550100' if kind == 'phone' else 'address'})"
            total += len(ids)
        if not total:
            return "give external_ids, emails or phones"
        if total > MAX_IDS:
            return f"{total} ids; at most {MAX_IDS} per subscription group"
        return None

    # --- /catalogs/{name}/items ----------------------------------------------------------
    def _catalog_items(self, method: str, catalog: str, body: Any) -> Response:
        if catalog not in self._catalogs:
            return _catalog_error(404, {"catalog-not-found": ("Could not find catalog", ["catalog_name"], [catalog])})
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items or body.keys() != {"items"}:
            return _catalog_error(400, {"item-array-invalid": ("items must be a non-empty array of objects", ["items"], [])})
        if len(items) > MAX_IDS:
            message = f"The request has {len(items)} items; at most {MAX_IDS}"
            return _catalog_error(400, {"request-includes-too-many-items": (message, ["items"], [len(items)])})
        fields, stored = self._catalogs[catalog], self._items[catalog]
        errors: dict[str, tuple[str, list[str], list[Any]]] = {}

        def fail(error_id: str, message: str, parameter: str, value: Any) -> None:
            errors.setdefault(error_id, (message, [parameter], []))[2].append(value)

        seen: set[str] = set()
        for item in items:
            if not isinstance(item, dict):
                fail("item-array-invalid", "Every item must be an object", "items", item)
                continue
            item_id = item.get("id")
            if item_id is None:
                fail("items-missing-ids", "Every item needs an id", "id", None)
            elif not isinstance(item_id, str):
                fail("ids-not-strings", "Item ids must be strings", "id", item_id)
            elif len(item_id) > 250:
                fail("ids-too-large", "Item ids are at most 250 characters", "id", item_id)
            elif not _NAME.fullmatch(item_id):
                fail("invalid-ids", "Item ids may only include letters, numbers, hyphens and underscores", "id", item_id)
            elif item_id in seen:
                fail("ids-not-unique", "Item ids must be unique within a request", "id", item_id)
            elif method == "POST" and item_id in stored:
                fail("item-already-exists", "An item with this id already exists", "id", item_id)
            elif method == "PATCH" and item_id not in stored:
                fail("item-not-found", "Could not find item", "id", item_id)
            if isinstance(item_id, str):
                seen.add(item_id)
            allowed = frozenset() if method == "DELETE" else fields
            for field in sorted(item.keys() - allowed - {"id"}):
                fail("invalid-fields", f"Fields not in catalog {catalog!r} (or not allowed here)", "fields", field)
        if errors:
            return _catalog_error(404 if errors.keys() == {"item-not-found"} else 400, errors)
        for item in items:
            if method == "DELETE":
                stored.pop(item["id"], None)
            elif method == "PATCH":
                stored[item["id"]].update(item)
            else:
                stored[item["id"]] = dict(item)
        return Response.json(202, {"message": "success"})


def _catalog_fields(name: str, fields: Iterable[str]) -> frozenset[str]:
    if not _NAME.fullmatch(name):
        raise ValueError(f"catalog name {name!r} may only use letters, numbers, hyphens and underscores (1-250)")
    return frozenset(fields) - {"id"}


def _catalog_error(status: int, errors: dict[str, tuple[str, list[str], list[Any]]]) -> Response:
    """Braze's catalog error body: one entry per error id, naming the offending values."""
    entries = [
        {"id": error_id, "message": message, "parameters": parameters, "parameter_values": values}
        for error_id, (message, parameters, values) in errors.items()
    ]
    return _message(status, "Invalid Request", errors=entries)
