"""A cheap fingerprint of what a sync's model reads, for ``schedule: {when_changed: true}``.

The fingerprint changes when anything the next diff could see changes, without running the
diff: the sync's definition (minus its schedule), the SQL of its model and of every model
upstream, and the data those models read:

- files read through table functions (``read_csv('data/users.csv')``, ``read_parquet([...])``,
  globs, or ``FROM 'data/x.csv'``): a content hash, recomputed only when a file's size or
  mtime moved (so a rewrite with identical bytes does not trigger a run). Files over 16 MiB
  are hashed by size, mtime and their first and last MiB.
- warehouse tables: ``count(*)`` and an order-independent sum of row hashes, asked of the
  warehouse itself in its own dialect (built with sqlglot, identifiers quoted; the per-row hash
  is the engine's, ``WarehouseSession.row_hash_sum``). On DuckDB it is recomputed only when the
  warehouse file (or its WAL) changed since the last look; other engines give no such cheap
  signal, so they are asked at every poll. The warehouse is opened for just those queries,
  never held across the scheduler's idle time.
- ``freshness_sql:`` replaces both: the user's query, in the warehouse's dialect (e.g. ``SELECT
  max(updated_at) FROM orders``), is run there with the models defined as views, and its result
  rows are hashed.

Remote inputs (``s3://``, ``https://``) cannot be watched; use ``freshness_sql`` for them.
"""

from __future__ import annotations

import glob
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import sqlglot
from sqlglot import exp

from reverse_etl.config.profiles import DuckDBWarehouseConfig
from reverse_etl.errors import ConfigError, RetlError
from reverse_etl.project import Project, SyncDef
from reverse_etl.warehouse import WarehouseSession, open_warehouse
from reverse_etl.warehouse.sql import SqlSession

FULL_HASH_LIMIT = 16 * 1024 * 1024
EDGE_BYTES = 1024 * 1024
_FILE_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".json", ".jsonl", ".ndjson", ".gz", ".zst", ".xlsx")


@dataclass(frozen=True)
class ModelInputs:
    """What a model reads, following models upstream."""

    models: tuple[str, ...]  # the model and every model it reads, in dependency order
    tables: tuple[tuple[str, ...], ...] = ()  # warehouse relations, as written (catalog, schema, name)
    files: tuple[str, ...] = ()  # local paths and globs, as written
    remote: tuple[str, ...] = ()  # URLs, which cannot be watched

    @property
    def table_names(self) -> frozenset[str]:
        """Lower-cased unqualified names of the warehouse relations read."""
        return frozenset(t[-1].lower() for t in self.tables)


@dataclass
class Fingerprint:
    digest: str
    parts: dict[str, Any] = field(default_factory=dict)  # cacheable pieces, see Fingerprinter


def _strings(node: exp.Expression) -> list[str]:
    """Positional string arguments of a table function (named options like header=true skipped)."""
    out: list[str] = []
    args = [node.args.get("this"), *(node.args.get("expressions") or [])]
    for arg in args:
        if isinstance(arg, exp.Literal) and arg.is_string:
            out.append(arg.this)
        elif isinstance(arg, exp.Array):
            out.extend(e.this for e in arg.expressions if isinstance(e, exp.Literal) and e.is_string)
    return out


def _looks_like_file(name: str) -> bool:
    return "/" in name or "*" in name or name.lower().endswith(_FILE_SUFFIXES)


def model_inputs(project: Project, model: str) -> ModelInputs:
    """The models, warehouse tables and files ``model`` reads, directly or through other models."""
    names = project.graph.upstream([model])
    tables: dict[tuple[str, ...], None] = {}
    files: dict[str, None] = {}
    remote: dict[str, None] = {}
    dialect = open_warehouse(project.target.config.warehouse, project.root).DIALECT
    for name in names:
        tree = sqlglot.parse_one(project.models[name].sql, read=dialect)
        ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
        for table in tree.find_all(exp.Table):
            if not isinstance(table.this, exp.Identifier):
                for path in _strings(table.this):
                    (remote if "://" in path else files)[path] = None
                continue
            parts = tuple(p for p in (table.catalog, table.db, table.name) if p)
            if len(parts) == 1 and (parts[0] in ctes or parts[0] in project.models):
                continue
            if len(parts) == 1 and table.this.quoted and _looks_like_file(parts[0]):
                (remote if "://" in parts[0] else files)[parts[0]] = None
                continue
            tables[_as_stored(table, dialect)] = None
    return ModelInputs(tuple(names), tuple(tables), tuple(files), tuple(remote))


def _as_stored(table: exp.Table, dialect: str) -> tuple[str, ...]:
    """A table's name parts as the engine stores them: unquoted parts folded the engine's way
    (Snowflake upper case, PostgreSQL lower case), so they can be quoted when read."""
    if dialect == "duckdb":  # case-insensitive even when quoted: names kept as written
        return tuple(p for p in (table.catalog, table.db, table.name) if p)
    fold = sqlglot.Dialect.get_or_raise(dialect).normalize_identifier
    parts = [table.args.get(k) for k in ("catalog", "db", "this")]
    return tuple(fold(p.copy()).name for p in parts if isinstance(p, exp.Identifier) and p.name)


def table_fingerprint_sql(session: WarehouseSession, parts: tuple[str, ...]) -> str:
    """``SELECT count(*), <sum of row hashes as text>`` of one table, in the session's dialect."""
    alias = exp.to_identifier("__retl_t", quoted=True)
    names = [exp.to_identifier(p, quoted=True) for p in parts]
    table = exp.Table(this=names[-1], db=names[-2] if len(names) > 1 else None,
                      catalog=names[-3] if len(names) > 2 else None, alias=exp.TableAlias(this=alias))
    hashed = sqlglot.parse_one(session.row_hash_sum(alias.sql(session.dialect)), read=session.dialect)
    total = exp.cast(exp.Coalesce(this=hashed, expressions=[exp.Literal.number(0)]), exp.DataType.build("TEXT"))
    return exp.select(exp.Count(this=exp.Star()), total).from_(table).sql(session.dialect)


def table_state(session: WarehouseSession, parts: tuple[str, ...]) -> str:
    """``<rows>:<hash sum>`` of a table now; a table that cannot be read is a state too (it may appear later)."""
    try:
        rows = session.query_native(table_fingerprint_sql(session, parts))
    except Exception as exc:
        if isinstance(exc, RetlError):
            raise
        session.reset()
        return f"unreadable:{type(exc).__name__}"
    return f"{rows[0][0]}:{rows[0][1]}" if rows else "empty"


def _digest(data: Any) -> str:
    return hashlib.blake2b(orjson.dumps(data, option=orjson.OPT_SORT_KEYS, default=str), digest_size=16).hexdigest()


def file_hash(path: Path, size: int, mtime_ns: int) -> str:
    """The content hash of one file (edges only, plus size and mtime, past FULL_HASH_LIMIT)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        if size <= FULL_HASH_LIMIT:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        else:
            h.update(f"{size}:{mtime_ns}".encode())
            h.update(fh.read(EDGE_BYTES))
            fh.seek(size - EDGE_BYTES)
            h.update(fh.read(EDGE_BYTES))
    return h.hexdigest()


class Fingerprinter:
    """Fingerprints syncs of one project, reusing hashes of inputs that did not move.

    ``cache`` maps sync name -> the ``parts`` of its last fingerprint; keep it between calls
    (the scheduler persists it) so unchanged files and tables are not read again.
    """

    def __init__(self, project: Project, cache: dict[str, Any] | None = None) -> None:
        self.project = project
        self.cache: dict[str, Any] = cache if cache is not None else {}

    def inputs(self, sync: SyncDef) -> ModelInputs:
        return model_inputs(self.project, sync.config.model)

    def fingerprint(self, sync: SyncDef) -> Fingerprint:
        """The sync's fingerprint now. Raises WarehouseLockedError if the warehouse is busy."""
        inputs = self.inputs(sync)
        old = self.cache.get(sync.name) or {}
        definition = sync.config.model_dump(mode="json", exclude={"schedule", "description", "tags"})
        sql = [self.project.models[m].sql for m in inputs.models]
        schedule = sync.config.schedule
        parts: dict[str, Any] = {}
        if schedule is not None and schedule.freshness_sql:
            parts["freshness"] = self._freshness(sync, inputs, schedule.freshness_sql)
        else:
            parts["files"] = self._files(inputs, old.get("files") or {})
            if inputs.tables:
                parts["tables"] = self._tables(inputs, old.get("tables") or {})
        self.cache[sync.name] = parts
        summary = {k: (v if k != "files" else {p: e[-1] for p, e in v.items()}) for k, v in parts.items()}
        if "tables" in summary:
            summary["tables"] = summary["tables"].get("hashes")
        return Fingerprint(_digest({"sync": definition, "sql": sql, **summary}), parts)

    # --- files ---------------------------------------------------------------------------
    def _files(self, inputs: ModelInputs, old: dict[str, Any]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        for pattern in inputs.files:
            full = os.path.expanduser(pattern)
            full = full if os.path.isabs(full) else str(self.project.root / full)
            matches = sorted(glob.glob(full)) if glob.has_magic(full) else [full]
            if not matches:
                out[pattern] = [None, None, "missing"]
            for path in matches:
                try:
                    st = os.stat(path)
                except OSError:
                    out[path] = [None, None, "missing"]
                    continue
                prev = old.get(path)
                if prev and prev[0] == st.st_size and prev[1] == st.st_mtime_ns:
                    out[path] = prev
                else:
                    out[path] = [st.st_size, st.st_mtime_ns, file_hash(Path(path), st.st_size, st.st_mtime_ns)]
        return out

    # --- warehouse tables ----------------------------------------------------------------
    def _warehouse_stat(self) -> list[Any] | None:
        config = self.project.target.config.warehouse
        if not isinstance(config, DuckDBWarehouseConfig):
            return None  # no cheap "did anything change" signal: hash every time
        path = self.project.path(config.path)
        out: list[Any] = []
        for p in (path, path.with_name(path.name + ".wal")):
            try:
                st = os.stat(p)
                out += [st.st_size, st.st_mtime_ns]
            except OSError:
                out += [None, None]
        return out

    def _tables(self, inputs: ModelInputs, old: dict[str, Any]) -> dict[str, Any]:
        stat = self._warehouse_stat()
        names = [".".join(t) for t in inputs.tables]
        hashes = old.get("hashes") or {}
        if stat is not None and old.get("stat") == stat and all(n in hashes for n in names):
            return {"stat": stat, "hashes": {n: hashes[n] for n in names}}
        warehouse = open_warehouse(self.project.target.config.warehouse, self.project.root)
        with warehouse.session() as session:
            fresh = {name: table_state(session, parts) for parts, name in zip(inputs.tables, names, strict=True)}
        return {"stat": stat, "hashes": fresh}

    # --- freshness_sql -------------------------------------------------------------------
    def _freshness(self, sync: SyncDef, inputs: ModelInputs, query: str) -> str:
        warehouse = open_warehouse(self.project.target.config.warehouse, self.project.root)
        h = hashlib.blake2b(digest_size=16)
        with warehouse.session() as session:
            if isinstance(session, SqlSession):  # engines whose model views live in the state schema
                session.state_schema = self.project.target.config.state.schema_
            session.build([self.project.models[m] for m in inputs.models])
            try:
                for batch in session.iter_native(session.models_sql(query), 10_000):
                    h.update(orjson.dumps(batch, default=str))
            except Exception as exc:
                if isinstance(exc, RetlError):
                    raise
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise ConfigError(f"sync {sync.name!r}: schedule.freshness_sql failed: {first}", file=sync.where) from None
        return h.hexdigest()
