"""Turn pydantic validation errors into ConfigErrors that name file, line and key."""

from __future__ import annotations

import difflib
import re
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from reverse_etl.config.yamlfile import Loc, YamlDoc
from reverse_etl.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def _allowed_keys(model: type[BaseModel], loc: Loc) -> list[str]:
    """Field names (and aliases) allowed at ``loc`` inside ``model``, following nested models."""
    current: Any = model
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        annotation = fields[part].annotation
        current = _inner_model(annotation)
    fields = getattr(current, "model_fields", None) or {}
    return [f.alias or name for name, f in fields.items()]


def _inner_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


# Labels pydantic puts at the end of a location for each member of a union (``str | list[str]``).
_UNION_MEMBER = re.compile(r"(str|int|float|bool|none|list\[.*\]|dict\[.*\]|literal\[.*\])")
_DESCRIBED = {"str": "a string", "int": "a whole number", "float": "a number", "bool": "true or false", "none": "null",
              "list": "a list", "dict": "a mapping", "literal": "one of the allowed values"}


def _union_members(errors: list[tuple[Loc, Any]]) -> list[tuple[Loc, Any]]:
    """One error per union field: "expected a string or a list", not one error per member type."""
    grouped: dict[Loc, list[str]] = {}
    out: list[tuple[Loc, Any]] = []
    for loc, err in errors:
        last = loc[-1] if loc else None
        if isinstance(last, str) and _UNION_MEMBER.fullmatch(last) and err["type"] != "missing":
            parent = loc[:-1]
            if parent not in grouped:
                grouped[parent] = []
                out.append((parent, {**err, "type": "union", "loc": parent}))
            kind = _DESCRIBED.get(last.split("[")[0], last)
            if kind not in grouped[parent]:
                grouped[parent].append(kind)
            continue
        out.append((loc, err))
    for i, (loc, err) in enumerate(out):
        if err["type"] == "union":
            out[i] = (loc, {**err, "msg": "expected " + " or ".join(grouped[loc])})
    return out


def format_errors(exc: ValidationError, doc: YamlDoc | None, base: Loc, model: type[BaseModel], what: str) -> list[ConfigError]:
    """One ConfigError per pydantic error, located in ``doc`` under ``base``."""
    out: list[ConfigError] = []
    errors = _union_members([(_clean_loc(err["loc"]), err) for err in exc.errors()])
    missing = {loc for loc, err in errors if err["type"] == "missing"}
    # A misspelt required key shows as an unknown key plus a missing one: report it once,
    # suggesting the missing key first ("modle" -> "model", not "mode").
    suggested: set[Loc] = set()
    for loc, err in errors:
        if err["type"] == "extra_forbidden":
            parent_missing = [str(m[-1]) for m in missing if m[:-1] == loc[:-1]]
            close = difflib.get_close_matches(str(loc[-1]), parent_missing, n=1)
            if close:
                suggested.add((*loc[:-1], close[0]))
    for loc, err in errors:
        if err["type"] == "missing" and loc in suggested:
            continue
        full = (*base, *loc)
        key = ".".join(str(p) for p in loc) or "(top level)"
        where = doc.where(full) if doc else None
        hint = None
        if err["type"] == "extra_forbidden":
            name = str(loc[-1])
            allowed = _allowed_keys(model, loc[:-1])
            preferred = [str(m[-1]) for m in suggested if m[:-1] == loc[:-1]]
            close = difflib.get_close_matches(name, preferred, n=1) or difflib.get_close_matches(name, allowed, n=1)
            message = f"{what}: unknown key {key!r}"
            if close:
                hint = f"did you mean {close[0]!r}?"
            elif allowed:
                hint = f"allowed keys: {', '.join(sorted(allowed))}"
        elif err["type"] == "missing":
            message = f"{what}: missing required key {key!r}"
        else:
            got = err.get("input")
            shown = "" if isinstance(got, dict | list) else f" (got {got!r})"
            text = str(err["msg"]).removeprefix("Value error, ")  # pydantic's wrapper around our own messages
            message = f"{what}: {key}: {text}{shown}"
        out.append(ConfigError(message, file=where, hint=hint))
    return out


def _clean_loc(loc: tuple[int | str, ...]) -> Loc:
    return tuple(p for p in loc if not (isinstance(p, str) and p.startswith(("function-", "tagged-union"))))


def validate(model: type[M], data: Any, *, doc: YamlDoc | None, base: Loc, what: str) -> tuple[M | None, list[ConfigError]]:
    """Validate ``data`` as ``model``; return the instance or the located errors."""
    try:
        return model.model_validate(data), []
    except ValidationError as exc:
        return None, format_errors(exc, doc, base, model, what)
