"""Optimizely's Event API (``POST /v1/events``), emulated: validate a batch, store conversions once.

A batch is all or nothing: one malformed visitor or event answers 400 ``{"error": "..."}`` and
stores nothing, so a writer cannot get away with half-valid batches. What is checked:

* the body is at most 3.5 MiB (else 413) and a JSON object sent as ``application/json``;
* ``account_id`` (string or integer) is the emulator's account; ``project_id`` a known project;
  ``client_name`` / ``client_version`` non-empty strings; ``enrich_decisions`` is ``true`` (without
  it conversions are not attributed to experiments); ``anonymize_ip`` a boolean when present;
* ``visitors`` a non-empty list; each ``visitor_id`` a non-empty string; ``attributes`` entries
  ``{"entity_id", "key", "type": "custom", "value"}``; ``snapshots`` a non-empty list, each with a
  ``decisions`` list (when present) and a non-empty ``events`` list;
* each event: ``entity_id`` and ``key`` non-empty strings, ``timestamp`` integer milliseconds
  between 2000-01-01 and a day from now (seconds are caught), ``uuid`` a canonical UUID,
  ``revenue`` an integer (cents), ``value`` a finite number, ``tags`` a flat object.

Fields the SDKs send that are not listed (``revision``, ``session_id``, ``type`` ...) are accepted
and ignored, like the real collector does. Events with the same ``(entity_id, uuid, timestamp)`` are
stored once; repeats count in :attr:`EventIntake.duplicates_ignored`.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Collection
from typing import Any

import orjson

from reverse_etl.sandbox.http import Request, Response

MAX_REQUEST_BYTES = int(3.5 * 1024 * 1024)
MIN_TIMESTAMP_MS = 946_684_800_000  # 2000-01-01: anything earlier is a unit mistake (seconds, not ms)
FUTURE_SLACK_MS = 24 * 3600 * 1000

KnownEvent = Callable[[int, str], str | None]  # (project_id, entity_id) → the event's key, or None
DedupKey = tuple[str, str, int]


class InvalidBatch(ValueError):
    """The batch breaks a rule; the message says which field of which visitor/event."""


def _error(status: int, message: str) -> Response:
    return Response.json(status, {"error": message})


def _nonempty_str(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidBatch(f"{where} must be a non-empty string")
    return value


def _number_id(value: Any, where: str) -> int:
    if isinstance(value, bool):
        raise InvalidBatch(f"{where} must be a numeric id")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    raise InvalidBatch(f"{where} must be a numeric id (a string of digits or an integer)")


def _list(value: Any, where: str, *, nonempty: bool) -> list[Any]:
    if not isinstance(value, list) or (nonempty and not value):
        raise InvalidBatch(f"{where} must be a {'non-empty ' if nonempty else ''}list")
    return value


def _scalar(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, str | int | bool)


def parse_batch(
    body: Any,
    *,
    account_id: int,
    projects: Collection[int],
    known_event: KnownEvent | None,
    now_ms: int,
) -> list[dict[str, Any]]:
    """Validate one Event API body; the conversion events in it, flattened with their visitor."""
    if not isinstance(body, dict):
        raise InvalidBatch("the body must be a JSON object")
    if str(_number_id(body.get("account_id"), "account_id")) != str(account_id):
        raise InvalidBatch(f"account_id {body.get('account_id')!r} is not this account")
    project_id = _number_id(body.get("project_id"), "project_id")
    if project_id not in projects:
        raise InvalidBatch(f"project_id {project_id} is not a project of this account")
    _nonempty_str(body.get("client_name"), "client_name")
    _nonempty_str(body.get("client_version"), "client_version")
    if body.get("enrich_decisions") is not True:
        raise InvalidBatch("enrich_decisions must be true")
    if "anonymize_ip" in body and not isinstance(body["anonymize_ip"], bool):
        raise InvalidBatch("anonymize_ip must be true or false")
    stored: list[dict[str, Any]] = []
    for v, visitor in enumerate(_list(body.get("visitors"), "visitors", nonempty=True)):
        where = f"visitors[{v}]"
        if not isinstance(visitor, dict):
            raise InvalidBatch(f"{where} must be an object")
        visitor_id = _nonempty_str(visitor.get("visitor_id"), f"{where}.visitor_id")
        attributes = _attributes(visitor.get("attributes", []), f"{where}.attributes")
        for s, snapshot in enumerate(_list(visitor.get("snapshots"), f"{where}.snapshots", nonempty=True)):
            here = f"{where}.snapshots[{s}]"
            if not isinstance(snapshot, dict):
                raise InvalidBatch(f"{here} must be an object")
            _list(snapshot.get("decisions", []), f"{here}.decisions", nonempty=False)
            for e, event in enumerate(_list(snapshot.get("events"), f"{here}.events", nonempty=True)):
                record = _event(event, f"{here}.events[{e}]", project_id, known_event, now_ms)
                record.update(project_id=project_id, visitor_id=visitor_id)
                if attributes:
                    record["attributes"] = dict(attributes)
                stored.append(record)
    return stored


def _attributes(value: Any, where: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for a, attribute in enumerate(_list(value, where, nonempty=False)):
        here = f"{where}[{a}]"
        if not isinstance(attribute, dict):
            raise InvalidBatch(f"{here} must be an object")
        _nonempty_str(attribute.get("entity_id"), f"{here}.entity_id")
        key = _nonempty_str(attribute.get("key"), f"{here}.key")
        if attribute.get("type") != "custom":
            raise InvalidBatch(f'{here}.type must be "custom"')
        if "value" not in attribute or not _scalar(attribute["value"]):
            raise InvalidBatch(f"{here}.value must be a string, number or boolean")
        found[key] = attribute["value"]
    return found


def _event(
    event: Any, where: str, project_id: int, known_event: KnownEvent | None, now_ms: int
) -> dict[str, Any]:
    if not isinstance(event, dict):
        raise InvalidBatch(f"{where} must be an object")
    entity_id = _nonempty_str(event.get("entity_id"), f"{where}.entity_id")
    key = _nonempty_str(event.get("key"), f"{where}.key")
    if known_event is not None:
        known_key = known_event(project_id, entity_id)
        if known_key is None:
            raise InvalidBatch(f"{where}.entity_id {entity_id} is not a custom event of project {project_id}")
        if known_key != key:
            raise InvalidBatch(f"{where}.key {key!r} does not match event {entity_id}'s key {known_key!r}")
    stamp = event.get("timestamp")
    if isinstance(stamp, bool) or not isinstance(stamp, int):
        raise InvalidBatch(f"{where}.timestamp must be an integer (milliseconds since the epoch)")
    if not MIN_TIMESTAMP_MS <= stamp <= now_ms + FUTURE_SLACK_MS:
        raise InvalidBatch(f"{where}.timestamp {stamp} is out of range; send milliseconds since the epoch")
    raw_uuid = _nonempty_str(event.get("uuid"), f"{where}.uuid")
    try:
        canonical = str(uuid.UUID(raw_uuid)) == raw_uuid.lower()
    except ValueError:
        canonical = False
    if not canonical:
        raise InvalidBatch(
            f"{where}.uuid {raw_uuid!r} is not a UUID like 123e4567-e89b-12d3-a456-426614174000"
        )
    record: dict[str, Any] = {"entity_id": entity_id, "key": key, "timestamp": stamp, "uuid": raw_uuid}
    if "revenue" in event:
        if isinstance(event["revenue"], bool) or not isinstance(event["revenue"], int):
            raise InvalidBatch(f"{where}.revenue must be an integer amount in cents")
        record["revenue"] = event["revenue"]
    if "value" in event:
        value = event["value"]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise InvalidBatch(f"{where}.value must be a finite number")
        record["value"] = value
    if "tags" in event:
        tags = event["tags"]
        if not isinstance(tags, dict) or not all(_scalar(t) for t in tags.values()):
            raise InvalidBatch(f"{where}.tags must be a flat object of strings, numbers and booleans")
        record["tags"] = dict(tags)
    return record


class EventIntake:
    """Conversion events received by the Event API, each (entity_id, uuid, timestamp) once."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.duplicates_ignored = 0
        self._seen: set[DedupKey] = set()

    def reset(self) -> None:
        """Forget every event."""
        self.events = []
        self.duplicates_ignored = 0
        self._seen = set()

    def handle(
        self,
        request: Request,
        *,
        account_id: int,
        projects: Collection[int],
        known_event: KnownEvent | None,
        reject: Callable[[], bool],
    ) -> Response:
        """Answer one ``POST /v1/events``: 204, or 400/413 with nothing stored."""
        if len(request.body) > MAX_REQUEST_BYTES:
            return _error(
                413, f"request body is {len(request.body)} bytes; at most {MAX_REQUEST_BYTES} allowed"
            )
        if "application/json" not in request.headers.get("content-type", ""):
            return _error(400, "Content-Type must be application/json")
        try:
            body = orjson.loads(request.body)
            events = parse_batch(
                body,
                account_id=account_id,
                projects=projects,
                known_event=known_event,
                now_ms=int(time.time() * 1000),
            )
        except orjson.JSONDecodeError:
            return _error(400, "the body is not valid JSON")
        except InvalidBatch as exc:
            return _error(400, str(exc))
        if reject():
            return _error(400, "batch rejected (injected fault)")
        self.store(events)
        return Response.empty(204)

    def store(self, events: list[dict[str, Any]]) -> int:
        """Keep the events not seen before; how many were new."""
        new = 0
        for event in events:
            key = (event["entity_id"], event["uuid"], event["timestamp"])
            if key in self._seen:
                self.duplicates_ignored += 1
                continue
            self._seen.add(key)
            self.events.append(event)
            new += 1
        return new

    def dump(self) -> dict[str, Any]:
        """Events and the duplicate count as JSON-able data."""
        return {
            "conversion_events": [dict(e) for e in self.events],
            "duplicates_ignored": self.duplicates_ignored,
        }

    def load(self, data: dict[str, Any]) -> None:
        """Restore what :meth:`dump` wrote (the dedup index is rebuilt from the events)."""
        self.reset()
        self.store([dict(e) for e in data.get("conversion_events", [])])
        self.duplicates_ignored = int(data.get("duplicates_ignored", 0))
