"""Pure functions from delta rows to ODP request items, and from ODP error bodies to row reasons.

No I/O here: every builder takes a sync and a :class:`DeltaRow` and returns the item to send or
the reason the row cannot be sent (a local rejection, never sent). Golden-tested.

Event idempotence
-----------------
Every event carries ``data.idempotence_id``, which ODP uses to drop an event it already has.
The id is :func:`idempotence_id`: ``uuid5(IDEMPOTENCE_NAMESPACE, "<sync name>\\n<key JSON>")`` where
``<key JSON>`` is the JSON array of the row's primary key values in ``primary_key`` order (the
same JSON the request bodies use, e.g. ``["o-1"]`` or ``["u1","2024-05-01T00:00:00Z"]``). So the
same event row always gets the same id: a resend after a crash, a rejected row retried next run
or a ``--full-resync`` is recognised by ODP as the event it already holds. The namespace is fixed
forever; renaming a sync (or changing its key columns) gives its events new ids.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any, TypeVar

from reverse_etl.config.syncs import SyncConfig
from reverse_etl.destinations.base import DeltaRow, dumps
from reverse_etl.destinations.odp.config import OdpAudience, OdpEvent

IDEMPOTENCE_NAMESPACE = uuid.UUID("d447b3be-7274-4536-8f81-74b25a751209")  # never change: ids derive from it
RESERVED_EVENT_DATA = ("ts", "idempotence_id")
_MAX_EPOCH_SECONDS = 100_000_000_000  # anything larger is epoch milliseconds (year 5138 in seconds)
_SCALARS = (str, bool, int, float, Decimal, datetime, date, time, uuid.UUID, bytes)

Item = dict[str, Any]
Built = tuple[Item | None, str | None]  # (item, None) or (None, why the row is rejected locally)
T = TypeVar("T")


def idempotence_id(sync_name: str, key_values: Sequence[Any]) -> str:
    """The stable ``idempotence_id`` of an event row (see the module docstring)."""
    return str(uuid.uuid5(IDEMPOTENCE_NAMESPACE, sync_name + "\n" + dumps(list(key_values)).decode()))


def _not_scalar(name: str, value: Any) -> str | None:
    if value is None or isinstance(value, _SCALARS):
        return None
    return f"field {name} is a {type(value).__name__}; ODP fields take a string, number, boolean or null"


def _mapped(sync: SyncConfig, values: dict[str, Any], *, clear: bool = False, drop_nulls: bool = False) -> Built:
    """``fields:`` as ODP field -> value (all null when ``clear``), or the reason they cannot be sent."""
    out: Item = {}
    for name, column in sync.fields.items():
        value = None if clear else values.get(column)
        problem = _not_scalar(name, value)
        if problem:
            return None, f"{problem} (column {column})"
        if value is not None or not drop_nulls:
            out[name] = value
    return out, None


def identifiers(sync: SyncConfig, values: dict[str, Any]) -> Built:
    """The row's ODP identifiers as strings; empty ones are left out, but one must remain."""
    out: Item = {}
    for name, column in sync.identifiers.items():
        value = values.get(column)
        if value is None or value == "":
            continue  # null would clear the identifier on the profile; absent leaves it alone
        out[name] = value if isinstance(value, str) else str(value)
    if not out:
        shown = ", ".join(f"{k} (column {v})" for k, v in sync.identifiers.items())
        return None, f"no identifier has a value: {shown}"
    return out, None


def profile_item(sync: SyncConfig, row: DeltaRow) -> Built:
    """``{"attributes": {...}}`` for POST /profiles: upsert, or clear the fields of a removed row."""
    attrs, problem = identifiers(sync, row.values)
    if attrs is None:
        return None, problem
    fields, problem = _mapped(sync, row.values, clear=row.action == "remove")
    if fields is None:
        return None, problem
    return {"attributes": {**attrs, **fields}}, None


def object_record(sync: SyncConfig, row: DeltaRow) -> Built:
    """A flat record for POST /objects/{object}, keyed by the object's primary key field."""
    ((key_field, column),) = sync.identifiers.items()
    key = row.values.get(column)
    if key is None or key == "":
        return None, f"{sync.object} primary key {key_field} (column {column}) is empty"
    if isinstance(key, bool) or not isinstance(key, str | int):
        key = str(key)  # ODP keys are strings or integers
    fields, problem = _mapped(sync, row.values, clear=row.action == "remove")
    if fields is None:
        return None, problem
    return {key_field: key, **fields}, None


def subscription(sync: SyncConfig, audience: OdpAudience, row: DeltaRow) -> Built:
    """One /lists/subscriptions update: subscribe on join, unsubscribe on leave."""
    ident, problem = identifiers(sync, row.values)
    if ident is None:
        return None, problem
    return {"list_id": audience.list_id, **ident, "subscribed": row.action == "join"}, None


def epoch_seconds(value: Any) -> tuple[int | None, str | None]:
    """Whole epoch seconds (ODP's ``ts``) from a timestamp, date, ISO string or epoch number."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            return None, f"{value!r} is not an ISO 8601 time"
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)  # naive warehouse times are UTC
        return int(moment.timestamp()), None
    if isinstance(value, date):
        return int(datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp()), None
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        if value > _MAX_EPOCH_SECONDS:
            return None, f"{value} looks like epoch milliseconds; ODP wants seconds (divide by 1000 in the model)"
        return int(value), None
    return None, f"a {type(value).__name__} is not a time"


def _name(literal: str | dict[str, str] | None, column: str | None, values: dict[str, Any], what: str) -> Built:
    """``{what: name}`` from a literal or a column; an empty ``action`` is left out (ODP makes it optional)."""
    if column is None:
        return {what: literal} if literal is not None else {}, None
    value = values.get(column)
    if value is None or str(value).strip() == "":
        return ({}, None) if what == "action" else (None, f"event {what} (column {column}) is empty")
    return {what: str(value)}, None


def event_item(sync: SyncConfig, event: OdpEvent, row: DeltaRow) -> Built:
    """One POST /events item: type, action, identifiers and data with ``ts`` and ``idempotence_id``."""
    ident, problem = identifiers(sync, row.values)
    if ident is None:
        return None, problem
    etype, problem = _name(event.type, event.type_column, row.values, "type")
    if etype is None:
        return None, problem
    action, problem = _name(event.action, event.action_column, row.values, "action")
    if action is None:
        return None, problem
    when = row.values.get(event.time)
    if when is None:
        return None, f"event time (column {event.time}) is empty"
    ts, problem = epoch_seconds(when)
    if ts is None:
        return None, f"event time (column {event.time}): {problem}"
    # An event is a fact: a null property says nothing, so it is left out rather than sent.
    props, problem = _mapped(sync, row.values, drop_nulls=True)
    if props is None:
        return None, problem
    key = [row.values.get(k) for k in sync.key_columns]
    data = {"ts": ts, "idempotence_id": idempotence_id(sync.name, key), **props}
    return {**etype, **action, "identifiers": ident, "data": data}, None


def invalid_rows(body: Any, size: int) -> dict[int, str] | None:
    """Index -> reason from an ODP 400's ``detail.invalids``, or None when no item is named.

    Entries name their item as ``index`` (``event`` on /events) with a ``message``, or with
    ``field`` + ``reason`` for schema errors. Indexes outside the batch are ignored.
    """
    detail = body.get("detail") if isinstance(body, dict) else None
    entries = detail.get("invalids") if isinstance(detail, dict) else None
    if not isinstance(entries, list):
        return None
    out: dict[int, str] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        index = entry.get("index", entry.get("event"))
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < size:
            continue
        if entry.get("message"):
            reason = str(entry["message"])
        elif entry.get("field"):
            reason = f"field {entry['field']}: {entry.get('reason') or 'invalid'}"
        else:
            reason = "invalid"
        out[index] = f"{out[index]}; {reason}" if index in out else reason
    return out or None


def chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
