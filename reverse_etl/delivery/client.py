"""Send :class:`Call` objects with retries, backoff, rate limits and bounded concurrency.

What happens to one call::

    a free slot (at most `concurrency` in flight) -> a token from the endpoint's bucket -> HTTP
      2xx / 3xx              done: the response goes back to the writer
      401 / 403              AuthError (terminal): the run stops, nothing else would pass
      other 4xx (not 408/425/429)
                             returned as is: the writer reads per-row rejections from it
      429, 5xx, 408, 425     transient: wait (Retry-After, else X-RateLimit-Reset on a 429, else
      timeout, dropped       exponential backoff with jitter) and try again, at most max_retries
      connection             times; then TransientError (the rows are retried by the next run)
      no connection at all   after max_retries: UnreachableError, and ``unreachable`` says why; until
                             an answer comes, other calls give up at their next attempt

An answer that follows a 5xx, a timeout or a dropped connection is marked ``doubtful``: that
earlier attempt may have been applied, so a rejection in the final answer does not prove the
destination lacks the rows (a create-only API refuses what the first attempt created). A call
marked not ``idempotent`` is never sent again after such an attempt: TransientError at once.

A 429 pauses the whole endpoint bucket until the moment the server named, so one throttled
request slows every request of the run instead of each finding out on its own. A success
whose ``X-RateLimit-Remaining`` is 0 pauses the bucket until ``X-RateLimit-Reset`` too, so a
window the server counts is not overrun in the first place.

Secrets (API keys, tokens) are replaced by ``***`` in every message this module produces. The
wire itself is an :class:`~reverse_etl.delivery.transport.Exchange` (aiohttp by default).
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx

from reverse_etl import secrets as secrets_registry
from reverse_etl.delivery.ratelimit import RateLimiter
from reverse_etl.delivery.transport import Answer, exchange_for
from reverse_etl.errors import AuthError, TransientError, UnreachableError

__all__ = ["RETRYABLE_STATUS", "AuthError", "Call", "DeliveryClient", "DeliverySettings", "redact", "retry_delay"]

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Call:
    """One HTTP request a destination wants sent, and which delta rows it carries."""

    method: str
    path: str
    body: bytes | None = None
    seqs: tuple[int, ...] = ()
    endpoint: str = "default"  # rate-limit bucket
    headers: dict[str, str] = field(default_factory=dict)
    url: str | None = None  # absolute URL, for APIs on another host than base_url
    # False for a request that must not be sent twice (a create where the API keeps no unique
    # key): after an attempt that may have been applied it is not resent; the writer finds out
    # what happened next run.
    idempotent: bool = True


@dataclass(frozen=True)
class DeliverySettings:
    """How one destination is called: where, with which headers, how fast, how patiently."""

    base_url: str
    headers: dict[str, str]  # sent with every request
    auth_headers: dict[str, str] = field(default_factory=dict)  # sent only to base_url's host
    requests_per_second: float | None = None
    endpoint_rates: dict[str, float] = field(default_factory=dict)
    max_retries: int = 5
    timeout_s: float = 30.0
    concurrency: int = 8
    backoff_base_s: float = 0.5
    backoff_max_s: float = 60.0
    secrets: tuple[str, ...] = ()


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with ``secrets`` and every registered secret (:mod:`reverse_etl.secrets`) masked."""
    return secrets_registry.redact(text, extra=secrets)


def _seconds_until_epoch(value: str) -> float | None:
    try:
        return float(value) - time.time()
    except ValueError:
        return None


def retry_delay(response: Answer | None, attempt: int, settings: DeliverySettings) -> float:
    """Seconds to wait before the next attempt: the server's word first, else backoff with jitter."""
    if response is not None:
        retry_after = response.headers.get("retry-after")
        if retry_after:
            try:
                return min(settings.backoff_max_s, max(0.0, float(retry_after)))
            except ValueError:
                try:
                    parsed = email.utils.parsedate_to_datetime(retry_after)
                except (TypeError, ValueError):
                    parsed = None
                if parsed is not None:
                    return min(settings.backoff_max_s, max(0.0, parsed.timestamp() - time.time()))
        reset = response.headers.get("x-ratelimit-reset")
        if reset and response.status_code == 429:
            wait = _seconds_until_epoch(reset)
            if wait is not None:
                return min(settings.backoff_max_s, max(0.0, wait))
    delay = min(settings.backoff_max_s, settings.backoff_base_s * (2**attempt))
    return delay * (0.5 + random.random() / 2)


class DeliveryClient:
    """An async HTTP client for one destination, shared by all its writers in a run.

    ``transport`` is any httpx async transport (``httpx.MockTransport`` in unit tests); by
    default an aiohttp-backed one with a keep-alive pool of ``concurrency`` connections.
    """

    def __init__(self, settings: DeliverySettings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        self._exchange = exchange_for(transport, settings.concurrency, settings.timeout_s)
        self._base = settings.base_url.rstrip("/")
        self._base_host = httpx.URL(settings.base_url).host
        self._default_limiter = RateLimiter(settings.requests_per_second)
        self._limiters: dict[str, RateLimiter] = {
            name: RateLimiter(rate) for name, rate in settings.endpoint_rates.items()
        }
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._secrets = tuple(settings.secrets) + tuple(
            v.split(" ", 1)[-1] for v in settings.auth_headers.values() if v
        )
        secrets_registry.register(*self._secrets)
        self.stats = {"requests": 0, "retries": 0, "throttled": 0}
        # Why the destination cannot be reached: set when a call gave up without ever connecting,
        # cleared by any answer. The streamer then stops the run after the chunk.
        self.unreachable: str | None = None

    def _headers(self, call: Call) -> dict[str, str]:
        headers = {**self.settings.headers, **call.headers}
        # Credentials go only to the API they belong to: never to another host named by Call.url.
        if call.url is None or httpx.URL(call.url).host == self._base_host:
            headers.update(self.settings.auth_headers)
        if call.body is not None and not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/json"
        return headers

    def limiter(self, endpoint: str) -> RateLimiter:
        return self._limiters.get(endpoint, self._default_limiter)

    async def send(self, call: Call) -> Answer:
        """Send ``call``; return the final response (2xx or a non-retryable 4xx).

        Raises :class:`TransientError` when retries run out, :class:`AuthError` on 401/403.
        """
        limiter = self.limiter(call.endpoint)
        attempt = 0
        url = call.url or (self._base + call.path if call.path.startswith("/") else f"{self._base}/{call.path}")
        doubtful = False  # an earlier attempt may have been applied (see RawAnswer.doubtful)
        while True:
            response: Answer | None = None
            problem: str
            connected = True
            if self.unreachable is not None:
                raise UnreachableError(redact(f"{call.method} {call.path} not sent: {self.unreachable}", self._secrets))
            try:
                async with self._slots:
                    # The token is taken once a connection is free: tokens taken while waiting for
                    # one would all fire together when connections free up, a burst the server counts.
                    await limiter.acquire()
                    self.stats["requests"] += 1
                    response = await self._exchange(call.method, url, self._headers(call), call.body)
                self.unreachable = None
                response.doubtful = doubtful
                status = response.status_code
                if status < 400:
                    self._respect_window(response, limiter)
                    return response
                if status in (401, 403):
                    raise AuthError(
                        f"{call.method} {call.path} answered {status}: {self._excerpt(response)}",
                        status_code=status,
                        hint="check the API key / token in the profile and its permissions for this endpoint",
                    )
                if status not in RETRYABLE_STATUS:
                    return response
                if status == 429:
                    self.stats["throttled"] += 1
                doubtful = doubtful or status >= 500  # a 5xx may come after the work was done
                problem = f"{call.method} {call.path} answered {status}: {self._excerpt(response)}"
            except httpx.TimeoutException as exc:
                connected = not isinstance(exc, httpx.ConnectTimeout)
                doubtful = doubtful or not isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout)
                problem = f"{call.method} {call.path} timed out after {self.settings.timeout_s}s"
            except httpx.TransportError as exc:
                # refused before connecting: never sent; dropped or cut off after: maybe applied
                connected = not isinstance(exc, httpx.ConnectError)
                doubtful = doubtful or connected
                problem = f"{call.method} {call.path} failed: {type(exc).__name__}: {exc}"
            if doubtful and not call.idempotent:
                raise TransientError(
                    redact(f"{problem}; it may have been applied, so it is not sent again "
                           "(the next run looks it up first)", self._secrets),
                    status_code=response.status_code if response is not None else None,
                )
            if attempt >= self.settings.max_retries:
                if not connected:
                    self.unreachable = redact(f"{problem} (gave up after {attempt + 1} attempts)", self._secrets)
                    raise UnreachableError(self.unreachable)
                raise TransientError(
                    redact(f"{problem} (gave up after {attempt + 1} attempts)", self._secrets),
                    status_code=response.status_code if response is not None else None,
                )
            delay = retry_delay(response, attempt, self.settings)
            if response is not None and response.status_code == 429:
                limiter.pause_until(time.monotonic() + delay)
            self.stats["retries"] += 1
            attempt += 1
            await asyncio.sleep(delay)

    @staticmethod
    def _respect_window(response: Answer, limiter: RateLimiter) -> None:
        """The server says its window is used up: hold every request until it resets."""
        if response.headers.get("x-ratelimit-remaining") != "0":
            return
        wait = _seconds_until_epoch(response.headers.get("x-ratelimit-reset", ""))
        if wait is not None and 0 < wait <= 60:
            limiter.pause_until(time.monotonic() + wait)

    def _excerpt(self, response: Answer) -> str:
        text = response.text[:300].strip() or "(empty body)"
        return redact(text, self._secrets)

    async def aclose(self) -> None:
        await self._exchange.aclose()

    async def __aenter__(self) -> DeliveryClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()
