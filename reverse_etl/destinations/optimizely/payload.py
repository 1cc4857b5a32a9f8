"""Pure functions from delta rows to Optimizely request bodies (golden-tested, no I/O).

Each builder returns ``(value, None)`` or ``(None, reason)``: a reason is a local rejection that
names the column, and the row is never sent.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import orjson

from reverse_etl.config.syncs import SyncConfig
from reverse_etl.destinations.base import DeltaRow, dumps
from reverse_etl.destinations.optimizely.config import ObjectKind, OptimizelyAudience, OptimizelyEvent

# The Event API takes at most 3.5 MB a request; stay under both readings of "MB".
MAX_EVENT_BODY_BYTES = 3_500_000
CLIENT_NAME = "reverse_etl"
# Fixed forever: event uuids derived from it must not change between versions, or the Event
# API would store a resent conversion twice.
EVENT_NAMESPACE = uuid.UUID("6f1c3f7e-4a59-5d2b-9c1e-7b3a52d0e8a1")

_EMAIL = re.compile(r"[^@\s,;<>]+@[^@\s,;<>]+\.[A-Za-z]{2,}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS_THRESHOLD = 100_000_000_000  # an epoch number above this is milliseconds (else seconds)

Result = tuple[Any, str | None]


def looks_like_email(value: str) -> bool:
    """True when ``value`` contains something shaped like an e-mail address."""
    return _EMAIL.search(value) is not None


# --- list attributes -----------------------------------------------------------------------
def list_member(value: Any, *, column: str, joining: bool, allow_pii: bool) -> Result:
    """One value of a list's ``list_content``, or why it cannot be one."""
    if value is None or value == "":
        return None, f"list value (column {column}) is empty"
    text = value if isinstance(value, str) else str(value)
    if "," in text:
        return None, f"list value {text!r} (column {column}) contains a comma, which separates list_content values"
    if text != text.strip():
        return None, f"list value {text!r} (column {column}) has leading or trailing whitespace"
    # Leaving is always allowed: taking PII out of a list is what the terms ask for.
    if joining and not allow_pii and looks_like_email(text):
        return None, (
            f"list value {text!r} (column {column}) looks like an e-mail address; Optimizely's terms forbid PII "
            "in list attributes. Map a non-PII id, or set audience.allow_pii: true if it is not PII"
        )
    return text, None


def apply_membership(members: Mapping[str, None], changes: Iterable[tuple[str, str]]) -> dict[str, None]:
    """The ordered member set after ``(action, value)`` changes (``join`` adds, ``leave`` removes)."""
    out = dict(members)
    for action, value in changes:
        if action == "leave":
            out.pop(value, None)
        else:
            out[value] = None
    return out


def list_attribute_body(spec: OptimizelyAudience, project_id: int, members: Iterable[str] | None) -> dict[str, Any]:
    """POST /list_attributes and PATCH /list_attributes/{id} (which needs the create fields too).

    ``members`` None leaves ``list_content`` out (keep the list); otherwise it replaces the list.
    """
    body: dict[str, Any] = {
        "project_id": project_id,
        "name": spec.list_attribute,
        "key_field": spec.key_field,
        "list_type": spec.list_type,
    }
    if spec.description is not None:
        body["description"] = spec.description
    if members is not None:
        body["list_content"] = ",".join(members)
    return body


# --- definitions (attributes, custom events, audiences) ------------------------------------
def row_key(sync: SyncConfig, row: DeltaRow) -> str:
    """The row's primary key as one string (how ids learnt from the API are remembered)."""
    return orjson.dumps([row.values.get(k) for k in sync.key_columns], default=str).decode()


def definition_body(
    kind: ObjectKind, sync: SyncConfig, values: Mapping[str, Any], *, project_id: int, create: bool, restore: bool = False
) -> Result:
    """The POST (``create``) or PATCH body of one definition; ``restore`` un-archives it."""
    match_column = sync.identifiers[kind.match]
    match = values.get(match_column)
    if match is None or match == "":
        return None, f"{kind.match} (column {match_column}) is empty"
    body: dict[str, Any] = {kind.match: match if isinstance(match, str) else str(match)}
    for field, column in sync.fields.items():
        value, problem = _definition_field(field, column, values.get(column))
        if problem:
            return None, problem
        if value is not None:
            body[field] = value
    if create:
        missing = sorted(f for f in kind.required if f not in body)
        if missing:
            return None, f"creating {kind.name} needs {', '.join(missing)} (column {sync.fields.get(missing[0], '?')} is empty)"
        if kind.needs_project_body:
            body["project_id"] = project_id
        if kind.name == "custom_events":
            body["event_type"] = "custom"
    if restore:
        body["archived"] = False
    return body, None


def _definition_field(field: str, column: str, value: Any) -> Result:
    if field == "conditions":
        if value is None:
            return None, f"conditions (column {column}) is empty"
        if isinstance(value, str):
            try:
                orjson.loads(value)
            except orjson.JSONDecodeError:
                return None, f"conditions (column {column}) is not valid JSON: {value[:80]!r}"
            return value, None
        # The API takes conditions as a JSON-encoded *string*, not as JSON.
        return dumps(value).decode(), None
    if field == "segmentation":
        return (None, None) if value is None else (bool(value), None)
    if value is None:
        # An empty description clears it; other fields keep what Optimizely has.
        return ("", None) if field == "description" else (None, None)
    return (value if isinstance(value, str) else str(value)), None


# --- Event API -----------------------------------------------------------------------------
def event_uuid(sync_name: str, key_values: Sequence[Any]) -> str:
    """A uuid fixed by the sync and the event row's primary key: resends are stored once."""
    name = sync_name + "\x1f" + orjson.dumps([str(v) for v in key_values]).decode()
    return str(uuid.uuid5(EVENT_NAMESPACE, name))


def timestamp_ms(value: Any) -> int:
    """Milliseconds since the epoch; naive timestamps are UTC, bare numbers seconds or ms."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return (aware - _EPOCH) // timedelta(milliseconds=1)
    if isinstance(value, date):
        return (datetime(value.year, value.month, value.day, tzinfo=UTC) - _EPOCH) // timedelta(milliseconds=1)
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        number = Decimal(str(value))
        return int(number if abs(number) >= _MS_THRESHOLD else number * 1000)
    raise ValueError(f"cannot read {type(value).__name__} {value!r} as a time")


def revenue_cents(value: Any, unit: str) -> int:
    """Integer cents from a cents column, or from a dollars column (x100, rounded half-up)."""
    if isinstance(value, bool):
        raise ValueError(f"revenue {value!r} is not a number")
    try:
        amount = Decimal(str(value)) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        raise ValueError(f"revenue {value!r} is not a number") from None
    if not amount.is_finite():
        raise ValueError(f"revenue {value!r} is not a finite number")
    if unit == "dollars":
        return int((amount * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    if amount != amount.to_integral_value():
        raise ValueError(f"revenue {value!r} is not whole cents (set event.revenue_unit: dollars if it holds dollars)")
    return int(amount)


def _tag(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("is not a finite number")
    if isinstance(value, str | int | float | bool):
        return value
    raise ValueError(f"is a {type(value).__name__}; tags must be strings, numbers or booleans")


def conversion(sync: SyncConfig, spec: OptimizelyEvent, entity_id: str, row: DeltaRow) -> Result:
    """One visitor with one snapshot holding the row's conversion event."""
    visitor_column = sync.identifiers["visitor_id"]
    visitor = row.values.get(visitor_column)
    if visitor is None or visitor == "":
        return None, f"visitor_id (column {visitor_column}) is empty"
    when = row.values.get(spec.time)
    if when is None:
        return None, f"event time (column {spec.time}) is empty"
    try:
        stamp = timestamp_ms(when)
    except ValueError as exc:
        return None, f"event time (column {spec.time}): {exc}"
    event: dict[str, Any] = {
        "entity_id": entity_id,
        "key": spec.key,
        "timestamp": stamp,
        "uuid": event_uuid(sync.name, [row.values.get(k) for k in sync.key_columns]),
    }
    if spec.revenue and row.values.get(spec.revenue) is not None:
        try:
            event["revenue"] = revenue_cents(row.values[spec.revenue], spec.revenue_unit)
        except ValueError as exc:
            return None, f"revenue (column {spec.revenue}): {exc}"
    if spec.value and row.values.get(spec.value) is not None:
        number = row.values[spec.value]
        if isinstance(number, bool) or not isinstance(number, int | float | Decimal) or not math.isfinite(float(number)):
            return None, f"value (column {spec.value}) {number!r} is not a finite number"
        event["value"] = float(number) if isinstance(number, Decimal) else number
    tags: dict[str, Any] = {}
    for tag, column in sync.fields.items():
        if row.values.get(column) is None:
            continue
        try:
            tags[tag] = _tag(row.values[column])
        except ValueError as exc:
            return None, f"tag {tag} (column {column}) {exc}"
    if tags:
        event["tags"] = tags
    text = visitor if isinstance(visitor, str) else str(visitor)
    return {"visitor_id": text, "attributes": [], "snapshots": [{"decisions": [], "events": [event]}]}, None


def envelope(account_id: int, project_id: int, client_version: str) -> dict[str, Any]:
    """The Event API body without its visitors."""
    return {
        "account_id": str(account_id),
        "project_id": str(project_id),
        "anonymize_ip": True,
        "client_name": CLIENT_NAME,
        "client_version": client_version,
        # Without it Optimizely does not attribute the conversions to experiments.
        "enrich_decisions": True,
    }


def pack(
    visitors: Sequence[tuple[int, dict[str, Any]]], head: dict[str, Any], *, max_count: int, max_bytes: int = MAX_EVENT_BODY_BYTES
) -> tuple[list[list[tuple[int, dict[str, Any]]]], dict[int, str]]:
    """Visitors in batches of at most ``max_count`` whose bodies stay under ``max_bytes``;
    a visitor too big for any batch is rejected."""
    base = len(dumps({**head, "visitors": []}))
    batches: list[list[tuple[int, dict[str, Any]]]] = []
    rejected: dict[int, str] = {}
    current: list[tuple[int, dict[str, Any]]] = []
    size = base
    for seq, visitor in visitors:
        item = len(dumps(visitor))
        if base + item > max_bytes:
            rejected[seq] = f"the event is {item} bytes, over the Event API's {max_bytes}-byte request limit"
            continue
        if current and (len(current) >= max_count or size + 1 + item > max_bytes):  # 1: the comma
            batches.append(current)
            current, size = [], base
        size += item + (1 if current else 0)
        current.append((seq, visitor))
    if current:
        batches.append(current)
    return batches, rejected
