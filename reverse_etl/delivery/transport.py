"""The wire under :class:`~reverse_etl.delivery.client.DeliveryClient`: one request, one answer.

An :class:`Exchange` sends a request and returns an :data:`Answer`, raising httpx's exception
classes (``httpx.TimeoutException``, ``httpx.TransportError``) for the failures the client
retries, so the retry logic reads one vocabulary whatever carries the bytes:

- :class:`AiohttpExchange` (the default): one aiohttp session with a keep-alive pool of
  ``connections``. httpx's own transport (httpcore) and even its Request/Response objects cost
  about a millisecond of CPU per request here, ten times aiohttp; at Braze's 1,000 requests/s
  that is the whole core. Its answers are :class:`RawAnswer`, a plain record.
- :class:`HttpxExchange`: any httpx async transport (``httpx.MockTransport`` in unit tests).

Both return a :class:`RawAnswer`; destinations read ``status_code``, ``content``, ``text``,
``headers.get``, ``is_success``, ``links`` and ``doubtful``.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeAlias

import aiohttp
import httpx

# Headers aiohttp computes itself from the request; passing copies would duplicate them.
_OWN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
_LINK = re.compile(r'<([^>]*)>\s*;\s*rel="?([^";,]+)"?')


@dataclass(slots=True)
class RawAnswer:
    """An HTTP answer as read off the wire: status, headers (case-insensitive), body."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes
    # Set by the client: an earlier attempt of this request got no clear answer (a timeout, a
    # dropped connection, a 5xx) and may have been applied. A rejection in this answer then
    # does not prove the destination lacks the rows: the first attempt may have written them.
    doubtful: bool = False

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def links(self) -> dict[str, dict[str, str]]:
        """The ``Link`` header by ``rel`` (what ``httpx.Response.links`` gives)."""
        return {rel: {"url": url, "rel": rel} for url, rel in _LINK.findall(self.headers.get("link", ""))}


Answer: TypeAlias = RawAnswer


class Exchange(ABC):
    """Sends one request; returns the answer or raises httpx's transport exceptions."""

    @abstractmethod
    async def __call__(self, method: str, url: str, headers: dict[str, str], body: bytes | None) -> Answer:
        """The answer to one request."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


class AiohttpExchange(Exchange):
    """aiohttp with at most ``connections`` open connections, all kept alive and reused."""

    def __init__(self, *, connections: int = 8, timeout_s: float = 30.0) -> None:
        self._connections = connections
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        # Created on first use, inside the running event loop that will use it.
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._connections, limit_per_host=self._connections, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, auto_decompress=True, skip_auto_headers=("User-Agent",),
            )
        return self._session

    async def __call__(self, method: str, url: str, headers: dict[str, str], body: bytes | None) -> Answer:
        session = self._open()
        try:
            async with session.request(method, url, data=body, headers=headers, allow_redirects=False) as answer:
                return RawAnswer(answer.status, answer.headers, await answer.read())
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise httpx.ReadTimeout(f"no answer within the timeout ({_describe(exc)})") from exc
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(_describe(exc)) from exc
        except (aiohttp.ClientError, ConnectionError) as exc:
            # a dropped or reset connection, a truncated answer: the request may not have arrived
            raise httpx.RemoteProtocolError(_describe(exc)) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class HttpxExchange(Exchange):
    """Any httpx async transport; ``timeout_s`` is passed the way httpx transports read it."""

    def __init__(self, transport: httpx.AsyncBaseTransport, *, timeout_s: float = 30.0) -> None:
        self._transport = transport
        self._timeouts = {"connect": timeout_s, "read": timeout_s, "write": timeout_s, "pool": timeout_s}

    async def __call__(self, method: str, url: str, headers: dict[str, str], body: bytes | None) -> Answer:
        request = httpx.Request(method, url, content=body, headers=headers, extensions={"timeout": self._timeouts})
        response = await self._transport.handle_async_request(request)
        content = await response.aread()
        return RawAnswer(response.status_code, response.headers, content)

    async def aclose(self) -> None:
        await self._transport.aclose()


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def exchange_for(transport: httpx.AsyncBaseTransport | None, connections: int, timeout_s: float) -> Exchange:
    """The exchange a :class:`DeliveryClient` uses: over ``transport`` if given, else aiohttp."""
    if transport is not None:
        return HttpxExchange(transport, timeout_s=timeout_s)
    return AiohttpExchange(connections=connections, timeout_s=timeout_s)


__all__ = ["AiohttpExchange", "Answer", "Exchange", "HttpxExchange", "RawAnswer", "exchange_for"]
