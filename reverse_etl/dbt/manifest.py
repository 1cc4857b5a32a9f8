"""dbt models as sync sources, read from dbt's ``target/manifest.json``.

A sync's ``model:`` may name a dbt model, ``dbt:dim_users`` or ``{{ ref('dim_users') }}``, when the
target's profile has ``dbt_project:`` (the dbt project directory, or its manifest.json). The
manifest says where dbt built the model (database, schema, alias); the sync reads that relation,
so the dbt model is never re-run or re-compiled by reverse_etl: run ``dbt build`` first.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from sqlglot import exp

from reverse_etl.errors import ConfigError
from reverse_etl.modeling import Model

_REF = re.compile(r"""^\s*(?:dbt:\s*([A-Za-z0-9_.-]+)|\{\{\s*ref\(\s*['"]([A-Za-z0-9_.-]+)['"]\s*\)\s*\}\})\s*$""")
PREFIX = "dbt:"


def dbt_ref(model: str) -> str | None:
    """The dbt model a sync's ``model:`` names (``dbt:x`` or ``{{ ref('x') }}``), else None."""
    match = _REF.match(model)
    return (match.group(1) or match.group(2)) if match else None


@dataclass(frozen=True)
class DbtModel:
    """One model node of a manifest."""

    name: str
    unique_id: str
    database: str | None
    schema: str
    alias: str
    tags: tuple[str, ...] = ()
    description: str = ""
    columns: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)
    unique_columns: tuple[str, ...] = ()  # columns with a `unique` test

    def relation(self, dialect: str, *, with_database: bool = True) -> str:
        """The relation dbt built, quoted for ``dialect``."""
        table = exp.table_(self.alias, db=self.schema, catalog=self.database if with_database else None, quoted=True)
        return table.sql(dialect=dialect)


class Manifest:
    def __init__(self, path: Path, models: dict[str, DbtModel], project: str | None) -> None:
        self.path = path
        self.models = models
        self.project = project

    @classmethod
    def load(cls, path: Path) -> Manifest:
        """Read ``path`` (a manifest.json, or a dbt project directory holding target/manifest.json)."""
        if path.is_dir():
            path = path / "target" / "manifest.json"
        try:
            data = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            raise ConfigError(
                f"dbt manifest {path} does not exist", hint="run `dbt build` (or `dbt parse`) in the dbt project first"
            ) from None
        except (OSError, orjson.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read dbt manifest {path}: {exc}") from None
        nodes = data.get("nodes") if isinstance(data, dict) else None
        if not isinstance(nodes, dict):
            raise ConfigError(f"{path} is not a dbt manifest (no `nodes`)")
        unique: dict[str, list[str]] = {}
        for node in nodes.values():
            if node.get("resource_type") != "test":
                continue
            test = (node.get("test_metadata") or {}).get("name")
            column = node.get("column_name")
            attached = node.get("attached_node") or next(iter((node.get("depends_on") or {}).get("nodes") or []), None)
            if test == "unique" and column and attached:
                unique.setdefault(attached, []).append(str(column))
        models: dict[str, DbtModel] = {}
        for unique_id, node in nodes.items():
            if node.get("resource_type") != "model":
                continue
            name = str(node["name"])
            models[name] = DbtModel(
                name=name,
                unique_id=unique_id,
                database=node.get("database"),
                schema=str(node.get("schema") or "main"),
                alias=str(node.get("alias") or name),
                tags=tuple(node.get("tags") or ()),
                description=str(node.get("description") or ""),
                columns=tuple((node.get("columns") or {}).keys()),
                meta=dict((node.get("config") or {}).get("meta") or node.get("meta") or {}),
                unique_columns=tuple(unique.get(unique_id, ())),
            )
        project = (data.get("metadata") or {}).get("project_name")
        return cls(path, models, project)

    def model(self, name: str) -> DbtModel:
        found = self.models.get(name)
        if found is None:
            close = difflib.get_close_matches(name, list(self.models), n=1)
            raise ConfigError(
                f"dbt model {name!r} is not in {self.path}",
                hint=f"did you mean {close[0]!r}?" if close else "run `dbt build` so the manifest knows it",
            )
        return found


def manifest_path(dbt_project: str, root: Path) -> Path:
    path = Path(dbt_project)
    return path if path.is_absolute() else root / path


def dbt_models(refs: dict[str, str], dbt_project: str | None, root: Path, dialect: str) -> tuple[dict[str, Model], list[Exception]]:
    """A model per sync ``model:`` that names a dbt model (``refs``: model string -> where, for errors).

    The model reads the relation dbt built. On DuckDB the relation is taken in the attached
    warehouse file (schema + name): dbt-duckdb names its catalog after its own file name.
    """
    models: dict[str, Model] = {}
    errors: list[Exception] = []
    if not refs:
        return models, errors
    if not dbt_project:
        for model, where in refs.items():
            errors.append(ConfigError(
                f"model {model!r} names a dbt model, but the target has no `dbt_project:`", file=where,
                hint="add `dbt_project: path/to/dbt/project` to the target in profiles.yml",
            ))
        return models, errors
    try:
        manifest = Manifest.load(manifest_path(dbt_project, root))
    except ConfigError as exc:
        return models, [exc]
    for model, where in refs.items():
        name = dbt_ref(model)
        assert name is not None
        try:
            node = manifest.model(name)
        except ConfigError as exc:
            errors.append(ConfigError(str(exc), file=where, hint=exc.hint))
            continue
        relation = node.relation(dialect, with_database=dialect != "duckdb")
        models[model] = Model(name=model, path=manifest.path, dialect=dialect, sql=f"SELECT * FROM {relation}", refs=frozenset())
    return models, errors
