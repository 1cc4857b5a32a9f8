"""Plain request/response values passed between the HTTP server and an emulator."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson


class BadJson(ValueError):
    """The request body is not valid JSON."""


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # keys lower-cased
    body: bytes = b""

    @classmethod
    def build(cls, method: str, target: str, headers: dict[str, str], body: bytes = b"") -> Request:
        parts = urlsplit(target)
        return cls(
            method=method.upper(),
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in headers.items()},
            body=body,
        )

    def json(self) -> Any:
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError as exc:
            raise BadJson(str(exc)) from exc

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
        merged = {"Content-Type": "application/json"}
        merged.update(headers or {})
        return cls(status=status, body=orjson.dumps(payload), headers=merged)

    @classmethod
    def empty(cls, status: int = 204, headers: dict[str, str] | None = None) -> Response:
        return cls(status=status, body=b"", headers=dict(headers or {}))
