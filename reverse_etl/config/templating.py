"""The three template calls reverse_etl understands: ``env_var``, ``var`` and ``ref``.

Deliberately not full Jinja: configuration and models stay data, with no code to run. Each
``{{ ... }}`` must be exactly one of these calls; anything else is a clear error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any

from reverse_etl.errors import ConfigError

_EXPR = re.compile(r"\{\{\s*(.*?)\s*\}\}", re.DOTALL)
_CALL = re.compile(
    r"""^(?P<fn>env_var|var|ref)\(\s*(?P<q1>['"])(?P<arg>[^'"]*)(?P=q1)\s*"""
    r"""(?:,\s*(?:(?P<q2>['"])(?P<default>[^'"]*)(?P=q2)|(?P<num>-?\d+(?:\.\d+)?)|(?P<kw>none|None|true|false))\s*)?\)$"""
)

_MISSING = object()


class TemplateError(ConfigError):
    """A ``{{ ... }}`` expression could not be rendered."""


def env_var(name: str, default: Any = _MISSING, environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    if name in env:
        return env[name]
    if default is not _MISSING:
        return "" if default is None else str(default)
    raise TemplateError(
        f"environment variable {name!r} is not set",
        hint=f"export {name}=... before running, or give a default: {{{{ env_var('{name}', 'value') }}}}",
    )


def render(
    text: str,
    *,
    variables: Mapping[str, Any] | None = None,
    ref: Callable[[str], str] | None = None,
    environ: Mapping[str, str] | None = None,
    where: str = "",
) -> str:
    """Render every ``{{ env_var('X') }}`` / ``{{ var('x') }}`` / ``{{ ref('m') }}`` in ``text``.

    ``ref`` is allowed only where a callback is given (models); ``where`` prefixes errors.
    """
    if "{{" not in text:
        return text

    def replace(match: re.Match[str]) -> str:
        call = _CALL.match(match.group(1))
        if not call:
            raise TemplateError(
                f"{where}unsupported template expression {match.group(0)!r}",
                hint="only {{ env_var('NAME') }}, {{ var('name') }} and {{ ref('model') }} are supported",
            )
        fn, arg = call.group("fn"), call.group("arg")
        default: Any = _MISSING
        if call.group("q2") is not None:
            default = call.group("default")
        elif call.group("num") is not None:
            default = call.group("num")
        elif call.group("kw") is not None:
            default = {"none": None, "None": None, "true": "true", "false": "false"}[call.group("kw")]
        if fn == "env_var":
            try:
                return env_var(arg, default, environ)
            except TemplateError as exc:
                raise TemplateError(f"{where}{exc.message}", hint=exc.hint) from None
        if fn == "var":
            vars_ = variables or {}
            if arg in vars_:
                return str(vars_[arg])
            if default is not _MISSING:
                return "" if default is None else str(default)
            raise TemplateError(
                f"{where}variable {arg!r} is not defined",
                hint="define it under the target's `vars:` in profiles.yml or pass --vars",
            )
        if ref is None:
            raise TemplateError(f"{where}ref() can only be used in models")
        return ref(arg)

    return _EXPR.sub(replace, text)


def render_tree(value: Any, **kwargs: Any) -> Any:
    """Render templates in every string of a YAML-like tree (dicts, lists, scalars)."""
    if isinstance(value, str):
        return render(value, **kwargs)
    if isinstance(value, dict):
        return {k: render_tree(v, **kwargs) for k, v in value.items()}
    if isinstance(value, list):
        return [render_tree(v, **kwargs) for v in value]
    return value
