"""Reading dbt's ``target/run_results.json`` for ``schedule: {after_dbt: path}``.

dbt writes the file when an invocation ends. Each invocation has an ``invocation_id``; a sync
follows the newest one that built (status ``success``) a relation its model reads. Relations are
matched by their unqualified name, taken from ``relation_name`` (dbt >= 1.8) or else from the
node's ``unique_id`` (``model.my_project.orders`` -> ``orders``). A model that reads no
warehouse table (only files) follows every dbt run that built anything.

Only the newest invocation is visible: if two dbt runs finish between two polls, the scheduler
sees the second. Poll more often than dbt runs (``poll:``, default 1m).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import orjson

from reverse_etl.scheduler.triggers import DbtRun

log = logging.getLogger("reverse_etl.scheduler")
BUILT_TYPES = ("model", "seed", "snapshot")


def _relation(result: dict[str, Any]) -> str | None:
    relation = result.get("relation_name")
    if isinstance(relation, str) and relation:
        return relation.split(".")[-1].strip('"`[] ').lower()
    unique_id = result.get("unique_id")
    if isinstance(unique_id, str):
        parts = unique_id.split(".")
        if len(parts) >= 3 and parts[0] in BUILT_TYPES:
            return parts[2].lower()
    return None


def read_dbt_run(path: Path, tables_read: frozenset[str]) -> DbtRun | None:
    """The newest dbt invocation at ``path``, or None if there is none (yet) or it is mid-write."""
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, orjson.JSONDecodeError) as exc:
        log.info("cannot read %s yet (%s); looking again at the next poll", path, exc)
        return None
    metadata = data.get("metadata") if isinstance(data, dict) else None
    if not isinstance(metadata, dict) or not metadata.get("invocation_id"):
        log.warning("%s has no metadata.invocation_id; is it a dbt run_results.json?", path)
        return None
    built: set[str] = set()
    for result in data.get("results") or []:
        if not isinstance(result, dict) or result.get("status") != "success":
            continue
        unique_id = str(result.get("unique_id") or "")
        if unique_id.split(".")[0] not in BUILT_TYPES:
            continue
        name = _relation(result)
        if name:
            built.add(name)
    relevant = bool(built & tables_read) if tables_read else bool(built)
    return DbtRun(
        invocation_id=str(metadata["invocation_id"]),
        generated_at=str(metadata.get("generated_at") or ""),
        built=frozenset(built),
        relevant=relevant,
    )
