"""Secrets never leave the process in text: one registry, redacted at every boundary.

Every secret a configuration resolves (API keys and tokens, as ``SecretStr``) is registered when
the object holding it is built (:class:`~reverse_etl.destinations.base.Destination`, the delivery
client's auth headers). Text that leaves the process is passed through :func:`redact` where it
leaves: run errors and row-error reasons before they are stored in the run history, the CLI's
error messages, ``--format json`` output and ``--debug`` tracebacks, and log records
(:class:`RedactingFilter`). A destination that echoes a key back in an error body is thereby
covered too.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, SecretStr

MASK = "***"
MIN_LENGTH = 4  # shorter values would blank out ordinary words

_lock = threading.Lock()
_secrets: set[str] = set()


def register(*values: str | SecretStr | None) -> None:
    """Remember ``values`` as secrets (SecretStr unwrapped; None and short values ignored)."""
    with _lock:
        for value in values:
            text = value.get_secret_value() if isinstance(value, SecretStr) else value
            if text and len(text) >= MIN_LENGTH:
                _secrets.add(text)


def register_model(model: BaseModel) -> None:
    """Register every ``SecretStr`` field of ``model`` and of the models, lists and dicts it holds."""
    register(*_walk(model))


def _walk(value: Any) -> Iterable[SecretStr]:
    if isinstance(value, SecretStr):
        yield value
    elif isinstance(value, BaseModel):
        for item in value.__dict__.values():
            yield from _walk(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _walk(item)


def known() -> tuple[str, ...]:
    """The registered secrets, longest first (so a secret containing another is masked whole)."""
    with _lock:
        return tuple(sorted(_secrets, key=len, reverse=True))


def redact(text: str, extra: Iterable[str] = ()) -> str:
    """``text`` with every registered secret (and every value of ``extra``) replaced by ``***``."""
    secrets = [*known(), *(s for s in extra if s and len(s) >= MIN_LENGTH)]
    for secret in sorted(secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def redact_data(data: Any) -> Any:
    """``data`` (JSON-like) with :func:`redact` applied to every string in it."""
    if isinstance(data, str):
        return redact(data)
    if isinstance(data, dict):
        return {k: redact_data(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [redact_data(v) for v in data]
    return data


class RedactingFilter(logging.Filter):
    """A handler filter: the formatted message (arguments and exception text included) is redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info:
            formatted = logging.Formatter().formatException(record.exc_info)
            message = f"{message}\n{formatted}"
            record.exc_info = None
            record.exc_text = None
        record.msg, record.args = redact(message), None
        return True
