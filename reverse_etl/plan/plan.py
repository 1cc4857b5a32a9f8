"""What a sync would do: counts, a sample with before -> after, guard verdict, fingerprint."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from reverse_etl.diff.engine import Delta
from reverse_etl.errors import ConfigError
from reverse_etl.modeling.model import quote

PLAN_FILE_VERSION = 1


@dataclass(frozen=True)
class SyncPlan:
    sync: str
    type: str
    mode: str
    destination: str
    model: str
    added: int
    changed: int
    removed: int
    snapshot_rows: int
    fingerprint: str
    full_resync: bool = False
    guard_error: str | None = None
    reset: str | None = None  # why the snapshot starts afresh (every row is sent), if it does
    sample: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.added + self.changed + self.removed

    def as_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


@dataclass(frozen=True)
class PlanFile:
    """A saved ``retl diff --out plan.json``: applied exactly by ``retl sync --plan``."""

    target: str
    plans: list[SyncPlan]

    def write(self, path: Path) -> None:
        data = {"version": PLAN_FILE_VERSION, "target": self.target, "plans": [p.as_dict() for p in self.plans]}
        path.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))

    @classmethod
    def read(cls, path: Path) -> PlanFile:
        try:
            data = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read plan file: {exc}", file=str(path)) from None
        if not isinstance(data, dict) or data.get("version") != PLAN_FILE_VERSION:
            raise ConfigError(f"not a reverse_etl plan file (version {PLAN_FILE_VERSION})", file=str(path))
        plans = [SyncPlan(**{k: v for k, v in p.items() if k in SyncPlan.__dataclass_fields__}) for p in data["plans"]]
        return cls(target=str(data.get("target")), plans=plans)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def sample_rows(
    query: Callable[[str], Sequence[tuple[Any, ...]]], delta: Delta, snapshot_table: str, limit: int
) -> dict[str, list[dict[str, Any]]]:
    """Up to ``limit`` rows per kind; changed rows list only the columns that changed, before -> after.

    The "before" values are read from the snapshot for the sampled rows only. ``query`` runs one
    SELECT of the session's engine; the text is both DuckDB SQL and the canonical SQL that
    pushdown engines transpile (every identifier quoted, so no engine folds its case).
    """
    if limit <= 0 or delta.rows == 0:
        return {}
    cols = delta.columns
    shown = [*cols.key, *[c for c in cols.all if c not in cols.key]]
    select = ", ".join(f"d.{quote(c)}" for c in shown)
    olds = "".join(f", s.{quote(c)}" for c in cols.values)
    on_key = " AND ".join(f"s.{quote(k)} = d.{quote(k)}" for k in cols.key)
    old_join = f' LEFT JOIN {snapshot_table} AS s ON {on_key} AND s."__retl_hash" = d."__retl_old_hash"' if cols.values else ""
    out: dict[str, list[dict[str, Any]]] = {}
    for kind in ("added", "changed", "removed"):
        # kind is one of this module's constants, never user input
        sql = (
            f'SELECT d."__retl_action", {select}{olds} FROM '
            f'(SELECT * FROM {delta.table} WHERE "__retl_kind" = \'{kind}\' ORDER BY "__retl_seq" LIMIT {int(limit)}) AS d'
            f'{old_join} ORDER BY d."__retl_seq"'
        )
        rows = query(sql)
        items: list[dict[str, Any]] = []
        for row in rows:
            action, values = row[0], dict(zip(shown, row[1 : 1 + len(shown)], strict=True))
            old = dict(zip(cols.values, row[1 + len(shown) :], strict=True))
            key = {k: values[k] for k in cols.key}
            if kind == "removed" or action == "leave":
                values = {**values, **{c: v for c, v in old.items() if v is not None}}
            if kind == "changed" and action not in ("join", "leave"):
                changes = {c: [old.get(c), values.get(c)] for c in cols.values if old.get(c) != values.get(c)}
                items.append(_jsonable({"key": key, "action": action, "changes": changes}))
            else:
                items.append(_jsonable({"key": key, "action": action, "values": values}))
        if items:
            out[kind] = items
    return out
