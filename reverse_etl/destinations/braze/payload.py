"""Pure functions from delta rows to Braze request objects (golden-tested, no I/O)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reverse_etl.config.syncs import SyncConfig
from reverse_etl.destinations.base import DeltaRow
from reverse_etl.destinations.braze.config import BrazeAudience, BrazeEvent

MAX_BODY_BYTES = 4 * 1024 * 1024


def identify(sync: SyncConfig, values: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """The Braze identifier of a row, or the reason there is none."""
    out: dict[str, Any] = {}
    for braze_name, column in sync.identifiers.items():
        value = values.get(column)
        if value is None or value == "":
            return None, f"identifier {braze_name} (column {column}) is empty"
        out[braze_name] = value if isinstance(value, str) else str(value)
    return out, None


def attribute_object(sync: SyncConfig, row: DeltaRow) -> tuple[dict[str, Any] | None, str | None]:
    """The /users/track attributes object for one row, or a local rejection reason."""
    obj, problem = identify(sync, row.values)
    if obj is None:
        return None, problem
    if sync.type == "audience":
        audience = BrazeAudience.model_validate(sync.audience)
        joined = row.action == "join"
        if audience.membership == "boolean":
            obj[audience.name] = joined
        else:
            obj[audience.attribute] = {"add" if joined else "remove": [audience.name]}
        return obj, None
    if row.action == "remove":  # mirror, on_remove: clear
        obj.update({field: None for field in sync.fields})
        return obj, None
    obj.update({field: row.values.get(column) for field, column in sync.fields.items()})
    if row.action == "update":
        obj["_update_existing_only"] = True
    return obj, None


def event_object(sync: SyncConfig, row: DeltaRow) -> tuple[dict[str, Any] | None, str | None]:
    """The /users/track events object for one row, or a local rejection reason."""
    obj, problem = identify(sync, row.values)
    if obj is None:
        return None, problem
    event = BrazeEvent.model_validate(sync.event)
    name = row.values.get(event.name_column) if event.name_column else event.name
    if not name:
        return None, f"event name (column {event.name_column}) is empty"
    when = row.values.get(event.time)
    if when is None:
        return None, f"event time (column {event.time}) is empty"
    obj["name"] = name
    obj["time"] = when
    if sync.fields:
        obj["properties"] = {prop: row.values.get(column) for prop, column in sync.fields.items()}
    return obj, None


def chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
