"""Pure functions from a sync to the shape of its Braze request objects (golden-tested, no I/O).

The per-row objects are described as :mod:`~reverse_etl.destinations.columnar` expressions
and rendered for a whole chunk at once; the id-list bodies (``/users/delete``, subscription
groups) are small and built here directly.

==============================  ================================================================
records (upsert, insert)        ``{"<identifier>": "...", <field>: <value>, ...}``
records (update)                the same plus ``"_update_existing_only": true``
records (mirror, removed row)   ``on_remove: clear``: every mapped field ``null``;
                                ``on_remove: delete``: POST /users/delete ``{"external_ids": [...]}``
audience, boolean               ``{"<identifier>": "...", "<name>": true | false}``
audience, array                 ``{"<identifier>": "...", "<attribute>": {"add" | "remove": [name]}}``
audience, subscription group    /v2/subscription/status/set, ``subscribed`` / ``unsubscribed``
events                          ``{"<identifier>": "...", "name", "time", "properties": {...}}``
catalog item                    ``{"id": "<primary key>", <field>: <value>, ...}`` (DELETE: id only)
==============================  ================================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reverse_etl.config.syncs import SyncConfig
from reverse_etl.destinations.base import dumps
from reverse_etl.destinations.braze.config import BrazeAudience, BrazeEvent
from reverse_etl.destinations.columnar import ByAction, Col, Expr, Lit, Obj

MAX_BODY_BYTES = 4 * 1024 * 1024
# /v2/subscription/status/set takes ids under a key per identifier kind.
GROUP_ID_KEYS = {"external_id": "external_ids", "email": "emails", "phone": "phones"}


def _value(key: str, column: str) -> Col:
    # dob is a date: a TIMESTAMP column is cut to its day rather than refused.
    return Col(column, as_="date" if key == "dob" else None)


def identifier(sync: SyncConfig) -> tuple[str, Col]:
    """The one identifier of a Braze object: its key and the column, always sent as text."""
    name, column = next(iter(sync.identifiers.items()))
    return name, Col(column, as_="text")


def attribute_object(sync: SyncConfig, audience: BrazeAudience | None = None) -> Obj:
    """The /users/track attributes object of a records or attribute-audience sync."""
    fields: list[tuple[str, Expr]] = [identifier(sync)]
    if audience is not None:
        assert audience.name is not None
        if audience.membership == "boolean":
            fields.append((audience.name, ByAction((("join", Lit(True)),), Lit(False))))
        else:
            name = audience.name
            fields.append((audience.attribute, ByAction((("join", Lit({"add": [name]})),), Lit({"remove": [name]}))))
        return Obj(tuple(fields))
    mirror = sync.effective_mode == "mirror"
    for key, column in sync.fields.items():
        value: Expr = _value(key, column)
        if mirror:  # a removed row clears every mapped field (on_remove: clear)
            value = ByAction((("remove", Lit(None)),), value)
        fields.append((key, value))
    if sync.effective_mode == "update":
        fields.append(("_update_existing_only", Lit(True)))
    return Obj(tuple(fields))


def event_object(sync: SyncConfig, event: BrazeEvent) -> Obj:
    """The /users/track events object: identifier, name, time (ISO 8601) and properties."""
    name: Expr = Col(event.name_column, as_="text") if event.name_column else Lit(event.name)
    fields: list[tuple[str, Expr]] = [identifier(sync), ("name", name), ("time", Col(event.time, as_="time"))]
    if sync.fields:
        fields.append(("properties", Obj(tuple((key, Col(column)) for key, column in sync.fields.items()))))
    return Obj(tuple(fields))


def catalog_item(sync: SyncConfig, *, with_fields: bool = True) -> Obj:
    """A catalog item: ``id`` from the primary key, then the mapped fields (none for DELETE)."""
    fields: list[tuple[str, Expr]] = [("id", Col(sync.key_columns[0], as_="text"))]
    if with_fields:
        fields += [(key, Col(column)) for key, column in sync.fields.items()]
    return Obj(tuple(fields))


def delete_body(external_ids: Sequence[str]) -> bytes:
    """POST /users/delete for at most 50 users."""
    return dumps({"external_ids": list(external_ids)})


def subscription_body(group_id: str, state: str, identifier_name: str, ids: Sequence[str]) -> bytes:
    """POST /v2/subscription/status/set: one group, one state, at most 50 ids."""
    group: dict[str, Any] = {
        "subscription_group_id": group_id, "subscription_state": state, GROUP_ID_KEYS[identifier_name]: list(ids),
    }
    return dumps({"subscription_groups": [group]})


def items_body(items: Sequence[str]) -> bytes:
    """A catalog items body from item JSON texts (at most 50)."""
    return b'{"items":[' + ",".join(items).encode() + b"]}"


def chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
