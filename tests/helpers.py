"""Build small projects on disk for tests: models, syncs and a profiles file."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import yaml


def write_project(
    root: Path,
    *,
    models: dict[str, str],
    syncs: dict[str, list[dict[str, Any]]] | None = None,
    destinations: dict[str, dict[str, Any]] | None = None,
    target_extra: dict[str, Any] | None = None,
) -> Path:
    """A project in ``root``: ``models/<name>.sql``, ``syncs/<group>.yml`` and ``profiles.yml``."""
    (root / "models").mkdir(parents=True, exist_ok=True)
    (root / "syncs").mkdir(exist_ok=True)
    for name, sql in models.items():
        (root / "models" / f"{name}.sql").write_text(textwrap.dedent(sql).strip() + "\n")
    for group, items in (syncs or {}).items():
        (root / "syncs" / f"{group}.yml").write_text(yaml.safe_dump({"syncs": items}, sort_keys=False))
    target: dict[str, Any] = {
        "warehouse": {"type": "duckdb", "path": ".retl/warehouse.duckdb"},
        "destinations": destinations or {"braze": {"type": "braze", "sandbox": True}},
    }
    target.update(target_extra or {})
    (root / "profiles.yml").write_text(yaml.safe_dump({"target": "dev", "targets": {"dev": target}}, sort_keys=False))
    return root


def set_model(root: Path, name: str, sql: str) -> None:
    (root / "models" / f"{name}.sql").write_text(textwrap.dedent(sql).strip() + "\n")


def values_sql(columns: list[str], rows: list[tuple[Any, ...]]) -> str:
    """A SELECT over inline VALUES; an empty ``rows`` gives an empty result with those columns."""
    def lit(v: Any) -> str:
        if v is None:
            return "NULL"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        return "'" + str(v).replace("'", "''") + "'"

    cols = ", ".join(columns)
    if not rows:
        nulls = ", ".join(f"NULL::VARCHAR AS {c}" for c in columns)
        return f"SELECT {nulls} WHERE false"
    body = ",\n  ".join("(" + ", ".join(lit(v) for v in row) + ")" for row in rows)
    return f"SELECT * FROM (VALUES\n  {body}\n) AS t({cols})"


def audience_sync(name: str = "members", model: str = "members", mode: str = "mirror", **extra: Any) -> dict[str, Any]:
    sync = {
        "name": name, "model": model, "destination": "braze", "type": "audience", "mode": mode,
        "primary_key": "user_id", "identifiers": {"external_id": "user_id"}, "audience": {"name": "vip"},
    }
    sync.update(extra)
    return sync


def records_sync(name: str = "traits", model: str = "traits", mode: str = "upsert", **extra: Any) -> dict[str, Any]:
    sync = {
        "name": name, "model": model, "destination": "braze", "type": "records", "mode": mode,
        "primary_key": "user_id", "identifiers": {"external_id": "user_id"},
        "fields": {"plan": "plan", "ltv": "ltv"},
    }
    sync.update(extra)
    return sync
