"""``--redact``: previews that show what changes without showing who.

A plan's sample rows carry primary keys and identifier values (user ids, e-mail addresses) next
to the field values. Redacting replaces every value of an identifying column - the primary key
columns and the columns mapped to the destination's identifiers - by a stable hash, so a preview
can be pasted into a pull request or a ticket: the same user shows the same hash in every
preview, and field changes (``plan: pro → team``) stay readable.

The hash is a plain SHA-256 prefix: it hides values from a reader, but an identifier from a
small or guessable set (sequential ids) can be found by hashing candidates. It pseudonymizes;
it does not anonymize.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Collection
from typing import Any

from reverse_etl.plan.plan import SyncPlan

PREFIX = "sha256:"


def redact_value(value: Any) -> Any:
    """``sha256:`` and 12 hex digits of the value's text; None (no value) stays None."""
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    return PREFIX + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def _row(row: dict[str, Any], columns: Collection[str]) -> dict[str, Any]:
    out = dict(row)
    if isinstance(row.get("key"), dict):
        out["key"] = {c: redact_value(v) if c in columns else v for c, v in row["key"].items()}
    if isinstance(row.get("values"), dict):
        out["values"] = {c: redact_value(v) if c in columns else v for c, v in row["values"].items()}
    if isinstance(row.get("changes"), dict):
        out["changes"] = {
            c: [redact_value(v) for v in pair] if c in columns and isinstance(pair, list) else pair
            for c, pair in row["changes"].items()
        }
    return out


def redact_plan(plan: SyncPlan, columns: Collection[str]) -> SyncPlan:
    """``plan`` with every value of ``columns`` in its sample replaced by :func:`redact_value`.

    Counts and the fingerprint are untouched, so a redacted saved plan still applies exactly.
    """
    wanted = frozenset(columns)
    sample = {kind: [_row(row, wanted) for row in rows] for kind, rows in plan.sample.items()}
    return dataclasses.replace(plan, sample=sample)
