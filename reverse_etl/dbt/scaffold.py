"""``retl init --from-dbt``: a sync per dbt model tagged ``retl``, written to ``syncs/dbt.yml``.

What a sync needs beyond the model is taken from the model's ``meta.retl`` in dbt (any sync key:
destination, type, mode, primary_key, identifiers, fields, audience, ...); what is not given is
guessed and marked for review: the primary key is the column with a ``unique`` test (else
``user_id`` / ``id``), the identifier is ``external_id`` <- the key, and every other documented
column becomes a field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from reverse_etl.dbt.manifest import PREFIX, DbtModel, Manifest
from reverse_etl.errors import ConfigError


def _primary_key(model: DbtModel) -> str:
    if model.unique_columns:
        return model.unique_columns[0]
    for guess in ("user_id", "id", "external_id"):
        if guess in model.columns:
            return guess
    # No documented columns: the manifest cannot say; user_id is what most audience models key on.
    return model.columns[0] if model.columns else "user_id"


def sync_for(model: DbtModel, destination: str) -> dict[str, Any]:
    """The scaffolded sync of one dbt model."""
    meta = dict(model.meta.get("retl") or {}) if isinstance(model.meta.get("retl"), dict) else {}
    key = meta.pop("primary_key", None) or _primary_key(model)
    keys = key if isinstance(key, list) else [key]
    sync_type = meta.pop("type", "audience" if "audience" in model.tags else "records")
    sync: dict[str, Any] = {
        "name": meta.pop("name", model.name),
        "model": f"{PREFIX}{model.name}",
        "destination": meta.pop("destination", destination),
        "type": sync_type,
        "primary_key": key,
        "identifiers": meta.pop("identifiers", {"external_id": keys[0]}),
    }
    if sync_type == "audience":
        sync["audience"] = meta.pop("audience", {"name": model.name})
    else:
        sync["fields"] = meta.pop("fields", {c: c for c in model.columns if c not in keys})
    if model.description:
        sync["description"] = model.description
    sync.update(meta)  # any other sync key given in meta.retl (mode, schedule, guard, tags ...)
    return sync


def scaffold(manifest: Manifest, *, destination: str, tag: str = "retl") -> list[dict[str, Any]]:
    return [sync_for(m, destination) for _, m in sorted(manifest.models.items()) if tag in m.tags]


def write_syncs(root: Path, syncs: list[dict[str, Any]], *, filename: str = "dbt.yml", force: bool = False) -> Path:
    path = root / "syncs" / filename
    if path.exists() and not force:
        raise ConfigError(f"{path} exists", hint="pass --force to overwrite it, or --out another file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (
        "# Scaffolded by `retl init --from-dbt` from dbt models tagged retl.\n"
        "# Review primary keys, identifiers and fields; set them for good in the models' `meta: {retl: {...}}`.\n"
    )
    path.write_text(header + yaml.safe_dump({"syncs": syncs}, sort_keys=False))
    return path
