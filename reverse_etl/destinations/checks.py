"""Vectorised client-side checks over an Arrow chunk: which rows break a rule, and why.

Each check computes a boolean mask over a whole column with ``pyarrow.compute`` (no Python
per row); only the rows it flags are looked at in Python, to write the reason with the value.
A row keeps the first reason found for it. Destinations compose these into their API's rules
(:mod:`reverse_etl.destinations.braze.validate`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

Mask = Any  # a boolean pyarrow Array or ChunkedArray (pyarrow ships no type hints)


def shown(value: Any, limit: int = 40) -> str:
    """A value as it appears in a reason: repr, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_text(kind: pa.DataType) -> bool:
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


class RowChecks:
    """Reasons per row index of ``table``, filled by the check methods."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table
        self.reasons: dict[int, str] = {}

    def kind(self, column: str) -> pa.DataType:
        return self.table.schema.field(column).type

    def flag(self, mask: Mask, reason: Callable[[Any], str], column: str | None) -> None:
        """Rows where ``mask`` is true get ``reason(value of column)`` (first reason wins)."""
        mask = pc.fill_null(mask, False)
        if not pc.any(mask).as_py():
            return
        indexes = pc.indices_nonzero(mask).to_pylist()
        values = self.table.column(column).take(pa.array(indexes, pa.int64())).to_pylist() if column else [None] * len(indexes)
        for index, value in zip(indexes, values, strict=True):
            self.reasons.setdefault(index, reason(value))

    def flag_all(self, reason: str) -> None:
        for index in range(self.table.num_rows):
            self.reasons.setdefault(index, reason)

    def only(self, actions: Iterable[str]) -> Mask:
        """A mask of the rows whose action is one of ``actions``."""
        return pc.is_in(self.table.column("__retl_action"), pa.array(list(actions), pa.string()))

    # --- checks ------------------------------------------------------------------------
    def empty(self, column: str, what: str, where: Mask | None = None) -> None:
        """NULL, or an empty / blank string."""
        values = self.table.column(column)
        mask = pc.is_null(values)
        if is_text(values.type):
            mask = pc.or_kleene(mask, pc.equal(pc.utf8_trim_whitespace(values), ""))
        if where is not None:
            mask = pc.and_kleene(mask, where)
        self.flag(mask, lambda v: f"{what} is empty (column {column})", column)

    def too_long(self, column: str, what: str, limit: int) -> None:
        """Strings (or strings in a list) longer than ``limit`` characters."""
        values = self.table.column(column)
        kind = values.type
        if is_text(kind):
            mask = pc.greater(pc.utf8_length(values), limit)
            self.flag(mask, lambda v: f"{what} is {len(v)} characters; at most {limit} (column {column})", column)
        elif (pa.types.is_list(kind) or pa.types.is_large_list(kind)) and is_text(kind.value_type):
            array = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
            flat = pc.list_flatten(array)
            long = pc.greater(pc.utf8_length(flat), limit)
            if pc.any(pc.fill_null(long, False)).as_py():
                parents = pc.list_parent_indices(array).filter(pc.fill_null(long, False)).to_pylist()
                for index in parents:
                    self.reasons.setdefault(index, f"{what} holds a string over {limit} characters (column {column})")

    def not_utf8(self, column: str, what: str) -> None:
        """Bytes (a BLOB column) that are not UTF-8 text: sending them "repaired" would store other
        text than the warehouse holds."""
        values = self.table.column(column)
        if not (pa.types.is_binary(values.type) or pa.types.is_large_binary(values.type)):
            return
        try:
            pc.cast(values, pa.string())
            return
        except (pa.ArrowInvalid, UnicodeDecodeError):
            pass
        for index, value in enumerate(values.to_pylist()):  # only when some value is not UTF-8
            try:
                value is None or value.decode("utf-8")
            except UnicodeDecodeError:
                self.reasons.setdefault(index, f"{what} holds bytes that are not UTF-8 text (column {column})")

    def not_finite(self, column: str, what: str) -> None:
        """NaN and infinities: JSON has no way to write them."""
        values = self.table.column(column)
        if pa.types.is_floating(values.type):
            mask = pc.invert(pc.is_finite(values))
            self.flag(mask, lambda v: f"{what} is {v}; JSON has no NaN or infinity (column {column})", column)

    def _must(self, what: str, rule: str, column: str) -> Callable[[Any], str]:
        return lambda v: f"{what} must be {rule}, got {shown(v)} (column {column})"

    def not_in(self, column: str, what: str, rule: str, allowed: Iterable[str], *, upper: bool = False) -> None:
        """Text not in ``allowed`` (compared upper-cased if ``upper``); values of other types fail too."""
        values = self.table.column(column)
        if not is_text(values.type):
            self.flag(pc.is_valid(values), self._must(what, rule, column), column)
            return
        probe = pc.utf8_upper(values) if upper else values
        mask = pc.and_kleene(pc.is_valid(values), pc.invert(pc.is_in(probe, pa.array(sorted(allowed), pa.string()))))
        self.flag(mask, self._must(what, rule, column), column)

    def not_matching(self, column: str, what: str, rule: str, pattern: str, *, valid_date_prefix: bool = False) -> None:
        """Text that does not fully match the RE2 ``pattern``; with ``valid_date_prefix`` the
        first ten characters must also be a real calendar date (no 2024-02-30)."""
        values = self.table.column(column)
        if not is_text(values.type):
            self.flag(pc.is_valid(values), self._must(what, rule, column), column)
            return
        bad = pc.invert(pc.match_substring_regex(values, f"^(?:{pattern})$"))
        if valid_date_prefix:
            prefix = pc.utf8_slice_codeunits(values, 0, 10)
            dates = pc.strptime(prefix, format="%Y-%m-%d", unit="s", error_is_null=True)
            # strptime rolls 1990-02-30 over to March 2nd: a real date prints back as it was written
            bad = pc.or_kleene(bad, pc.or_kleene(pc.is_null(dates), pc.not_equal(pc.strftime(dates, format="%Y-%m-%d"), prefix)))
        self.flag(pc.and_kleene(pc.is_valid(values), bad), self._must(what, rule, column), column)
