"""Reading and compiling one model file."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from reverse_etl.config.templating import render
from reverse_etl.errors import ConfigError, ModelError

_DIALECT_LINE = re.compile(r"^\s*--\s*dialect\s*:\s*([A-Za-z0-9_]+)\s*$")


def quote(name: str, dialect: str = "duckdb") -> str:
    """``name`` as a quoted identifier in ``dialect`` (quotes inside are escaped by sqlglot)."""
    return exp.to_identifier(name, quoted=True).sql(dialect=dialect)


@dataclass(frozen=True)
class Model:
    """A compiled model: its SQL in the warehouse's dialect and what it reads."""

    name: str
    path: Path
    dialect: str
    sql: str  # rendered, in the warehouse dialect
    refs: frozenset[str]  # unqualified table names it reads (models or warehouse tables)

    def depends_on(self, model_names: set[str]) -> set[str]:
        return {r for r in self.refs if r in model_names and r != self.name}


def _tables_read(tree: exp.Expr) -> set[str]:
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    names: set[str] = set()
    for table in tree.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier):  # table functions such as read_csv(...)
            continue
        if table.db or table.catalog:  # qualified: a warehouse table, never a model
            continue
        if table.name not in ctes:
            names.add(table.name)
    return names


def compile_model(
    name: str,
    path: Path,
    text: str,
    *,
    variables: Mapping[str, Any],
    target_dialect: str = "duckdb",
    display: str | None = None,
) -> Model:
    """Render templates, check there is exactly one SELECT, find what it reads, transpile if needed."""
    shown = display or str(path)
    first = text.lstrip().splitlines()[0] if text.strip() else ""
    match = _DIALECT_LINE.match(first)
    dialect = match.group(1).lower() if match else target_dialect
    try:
        sqlglot.Dialect.get_or_raise(dialect)
    except (ValueError, KeyError):
        raise ConfigError(f"unknown SQL dialect {dialect!r} in the `-- dialect:` line", file=shown) from None
    rendered = render(text, variables=variables, ref=lambda m: quote(m, dialect), where=f"{shown}: ")
    try:
        statements = [s for s in sqlglot.parse(rendered, read=dialect) if s is not None]
    except ParseError as exc:
        detail = exc.errors[0] if exc.errors else {}
        line = detail.get("line")
        col = detail.get("col")
        where = f"{shown}:{line}" if line else shown
        desc = detail.get("description") or str(exc).splitlines()[0]
        raise ModelError(f"{where}: SQL syntax error in model {name!r}{f' (column {col})' if col else ''}: {desc}") from None
    if len(statements) != 1:
        raise ModelError(f"{shown}: model {name!r} must be exactly one SELECT statement, found {len(statements)}")
    tree = statements[0]
    if not isinstance(tree, exp.Query):
        raise ModelError(f"{shown}: model {name!r} must be a SELECT query, not {tree.key.upper()}")
    sql = rendered.strip().rstrip(";").strip()
    if dialect != target_dialect:
        sql = tree.sql(dialect=target_dialect)
    return Model(name=name, path=path, dialect=dialect, sql=sql, refs=frozenset(_tables_read(tree)))


def load_models(
    models_dir: Path, *, variables: Mapping[str, Any], target_dialect: str = "duckdb", root: Path | None = None
) -> tuple[dict[str, Model], list[Exception]]:
    """Every ``models/**/*.sql``; errors are collected, not raised, so all are reported at once."""
    models: dict[str, Model] = {}
    errors: list[Exception] = []
    if not models_dir.is_dir():
        return models, errors
    seen: dict[str, Path] = {}
    for path in sorted(models_dir.rglob("*.sql")):
        name = path.stem
        shown = str(path.relative_to(root)) if root else str(path)
        if name in seen:
            errors.append(ConfigError(f"model name {name!r} is also defined in {seen[name]}", file=shown))
            continue
        seen[name] = path
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            errors.append(ConfigError(f"not valid UTF-8 ({exc.reason} at byte {exc.start})", file=shown))
            continue
        try:
            models[name] = compile_model(name, path, text, variables=variables, target_dialect=target_dialect, display=shown)
        except (ConfigError, ModelError) as exc:
            errors.append(exc)
    return models, errors
