"""Braze's documented formats, checked before sending: a row that breaks one is rejected here,
with the reason, and never sent (shared/destinations/braze.md; the emulator checks the same).

=====================  ==================================================================
identifiers            not empty; ``email`` a valid address
``dob``                a real date ``YYYY-MM-DD`` (DATE and TIMESTAMP columns are converted)
``country``            ISO-3166-1 alpha-2, upper case (``US``)
``gender``             M, F, O, N or P (any case)
``email_subscribe``    opted_in, subscribed or unsubscribed (so is ``push_subscribe``)
``time_zone``          an IANA name (``America/New_York``)
strings                at most 255 characters (attribute values, array items, properties)
numbers                finite (JSON has no NaN or infinity)
event                  name 1..255 characters; time present, ISO 8601 when given as text
catalog item           id of ``[A-Za-z0-9_-]``, 1..250 characters
subscription ids       ``emails`` valid addresses, ``phones`` E.164
=====================  ==================================================================

Everything runs vectorised over the chunk (:class:`~reverse_etl.destinations.checks.RowChecks`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from reverse_etl.destinations.braze.config import MAX_TEXT
from reverse_etl.destinations.checks import RowChecks, is_text
from reverse_etl.formats import COUNTRY_CODES, timezones

__all__ = ["attributes", "catalog_items", "event", "identifier", "subscription_ids"]

EMAIL = r"[^@\s]+@[^@\s]+\.[^@\s.]+"
MAX_EMAIL = 254
E164 = r"\+[1-9][0-9]{1,14}"
DATE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
DATETIME = r"(?i)[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]{1,9})?)?(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)?"
ITEM_ID = r"[A-Za-z0-9_-]{1,250}"
GENDERS = ("M", "F", "O", "N", "P")
SUBSCRIBE_STATES = ("opted_in", "subscribed", "unsubscribed")


def _always(reason: str) -> Callable[[Any], str]:
    return lambda _value: reason


def email(checks: RowChecks, column: str, what: str) -> None:
    checks.too_long(column, what, MAX_EMAIL)
    checks.not_matching(column, what, "a valid email address", EMAIL)


def identifier(checks: RowChecks, name: str, column: str) -> None:
    """The identifier a row is addressed by: present, and well-formed for email."""
    checks.empty(column, f"identifier {name}")
    checks.not_utf8(column, f"identifier {name}")
    if name == "email":
        email(checks, column, "identifier email")
    elif name == "phone":
        checks.too_long(column, "identifier phone", MAX_TEXT)


def values(checks: RowChecks, fields: Mapping[str, str], what: str) -> None:
    """Any custom value: strings at most 255 characters, numbers finite, arrays of strings."""
    for key, column in fields.items():
        label = f"{what} {key}"
        checks.not_utf8(column, label)
        checks.too_long(column, label, MAX_TEXT)
        checks.not_finite(column, label)
        kind = checks.kind(column)
        if pa.types.is_list(kind) or pa.types.is_large_list(kind):
            inner = kind.value_type
            if not (is_text(inner) or pa.types.is_struct(inner) or pa.types.is_null(inner)):
                lengths = pc.list_value_length(checks.table.column(column))
                reason = f"{what} {key} is an array of {inner}; Braze arrays hold strings (column {column})"
                checks.flag(pc.greater(lengths, 0), _always(reason), column)


def attributes(checks: RowChecks, fields: Mapping[str, str]) -> None:
    """A /users/track attributes object's fields: standard formats, then custom value rules."""
    for key, column in fields.items():
        kind = checks.kind(column)
        if key == "dob":
            if is_text(kind):
                checks.not_matching(column, "dob", "a date written YYYY-MM-DD", DATE, valid_date_prefix=True)
            elif not (pa.types.is_date(kind) or pa.types.is_timestamp(kind) or pa.types.is_null(kind)):
                checks.not_in(column, "dob", "a date written YYYY-MM-DD", ())
        elif key == "country":
            checks.not_in(column, "country", "an ISO-3166-1 alpha-2 code such as US", COUNTRY_CODES)
        elif key == "gender":
            checks.not_in(column, "gender", "one of M, F, O, N, P", GENDERS, upper=True)
        elif key == "email":
            email(checks, column, "email")
        elif key in ("email_subscribe", "push_subscribe"):
            checks.not_in(column, key, "one of opted_in, subscribed, unsubscribed", SUBSCRIBE_STATES)
        elif key == "time_zone":
            checks.not_in(column, "time_zone", "an IANA time zone name such as America/New_York", timezones())
    values(checks, fields, "attribute")


def event(checks: RowChecks, name_column: str | None, time_column: str, properties: Mapping[str, str]) -> None:
    """An event object: its name (when from a column), time and properties."""
    if name_column is not None:
        checks.empty(name_column, "event name")
        checks.too_long(name_column, "event name", MAX_TEXT)
    checks.empty(time_column, "event time")
    kind = checks.kind(time_column)
    if is_text(kind):
        checks.not_matching(time_column, "event time", "an ISO 8601 date-time such as 2024-05-01T12:00:00Z",
                            DATETIME, valid_date_prefix=True)
    elif not (pa.types.is_timestamp(kind) or pa.types.is_date(kind)):
        checks.not_in(time_column, "event time", "a timestamp or an ISO 8601 date-time", ())
    values(checks, properties, "property")


def catalog_items(checks: RowChecks, id_column: str, fields: Mapping[str, str]) -> None:
    """A catalog item: its id (from the primary key) and string lengths."""
    checks.empty(id_column, "catalog item id")
    if is_text(checks.kind(id_column)):
        checks.not_matching(id_column, "catalog item id", "1 to 250 letters, digits, '-' or '_'", ITEM_ID)
    else:
        as_text = pc.cast(checks.table.column(id_column), pa.string())
        bad = pc.invert(pc.match_substring_regex(as_text, f"^(?:{ITEM_ID})$"))
        checks.flag(bad, lambda v: f"catalog item id must be 1 to 250 letters, digits, '-' or '_', got {v!r} (column {id_column})",
                    id_column)
    for key, column in fields.items():
        checks.not_finite(column, f"catalog field {key}")


def subscription_ids(checks: RowChecks, name: str, column: str) -> None:
    """Ids for /v2/subscription/status/set: emails and E.164 phones are checked by Braze."""
    checks.empty(column, f"identifier {name}")
    if name == "email":
        email(checks, column, "identifier email")
    elif name == "phone":
        checks.not_matching(column, "identifier phone", "an E.164 number such as +15555550100", E164)
