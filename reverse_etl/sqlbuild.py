"""Small helpers to build SQL as sqlglot expressions: every user-given name goes through here, quoted."""

from __future__ import annotations

from sqlglot import exp


def ident(name: str) -> exp.Identifier:
    return exp.to_identifier(name, quoted=True)


def col(name: str, table: str | None = None) -> exp.Column:
    return exp.column(name, table=table, quoted=True)


def table(name: str, db: str | None = None, catalog: str | None = None) -> exp.Table:
    return exp.table_(name, db=db, catalog=catalog, quoted=True)


def row_hash(columns: list[str], table_alias: str | None) -> exp.Expr:
    """DuckDB's hash of a struct of ``columns`` in the given (canonical) order.

    A struct keeps NULL distinct from the empty string and keeps positions, so
    (NULL, 'a') and ('a', NULL) differ. The algorithm is recorded with the snapshot and the
    hashes are recomputed from stored values when it changes.
    """
    if not columns:
        return exp.Literal.number(0)
    struct = exp.Struct(expressions=[exp.PropertyEQ(this=ident(c), expression=col(c, table_alias)) for c in columns])
    return exp.Anonymous(this="hash", expressions=[struct])


def sql(expression: exp.Expr, dialect: str = "duckdb") -> str:
    return expression.sql(dialect=dialect)
