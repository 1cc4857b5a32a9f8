"""Send :class:`Call` objects with retries, backoff, rate limits and bounded concurrency."""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from reverse_etl.delivery.ratelimit import RateLimiter
from reverse_etl.errors import TerminalError, TransientError

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class AuthError(TerminalError):
    """401/403: the credentials are wrong or lack a permission; every later call would fail too."""


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


@dataclass(frozen=True)
class DeliverySettings:
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


def redact(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def retry_delay(response: httpx.Response | None, attempt: int, settings: DeliverySettings) -> float:
    """Seconds to wait before the next attempt: the server's word first, else backoff with jitter."""
    if response is not None:
        retry_after = response.headers.get("retry-after")
        if retry_after:
            try:
                return min(settings.backoff_max_s, max(0.0, float(retry_after)))
            except ValueError:
                parsed = email.utils.parsedate_to_datetime(retry_after)
                if parsed is not None:
                    return min(settings.backoff_max_s, max(0.0, parsed.timestamp() - time.time()))
        reset = response.headers.get("x-ratelimit-reset")
        if reset and response.status_code == 429:
            try:
                return min(settings.backoff_max_s, max(0.0, float(reset) - time.time()))
            except ValueError:
                pass
    delay = min(settings.backoff_max_s, settings.backoff_base_s * (2**attempt))
    return delay * (0.5 + random.random() / 2)


class DeliveryClient:
    """An async HTTP client for one destination, shared by all its writers in a run."""

    def __init__(self, settings: DeliverySettings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        limits = httpx.Limits(max_connections=settings.concurrency, max_keepalive_connections=settings.concurrency)
        self._client = httpx.AsyncClient(
            base_url=settings.base_url,
            headers=settings.headers,
            timeout=settings.timeout_s,
            limits=limits,
            transport=transport,
        )
        self._default_limiter = RateLimiter(settings.requests_per_second)
        self._limiters: dict[str, RateLimiter] = {
            name: RateLimiter(rate) for name, rate in settings.endpoint_rates.items()
        }
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._base_host = httpx.URL(settings.base_url).host
        self.stats = {"requests": 0, "retries": 0, "throttled": 0}

    def _headers(self, call: Call) -> dict[str, str]:
        headers = dict(call.headers)
        # Credentials go only to the API they belong to: never to another host named by Call.url.
        if call.url is None or httpx.URL(call.url).host == self._base_host:
            headers = {**self.settings.auth_headers, **headers}
        if call.body is not None:
            headers.setdefault("Content-Type", "application/json")
        return headers

    def limiter(self, endpoint: str) -> RateLimiter:
        return self._limiters.get(endpoint, self._default_limiter)

    async def send(self, call: Call) -> httpx.Response:
        """Send ``call``; return the final response (2xx or a non-retryable 4xx).

        Raises :class:`TransientError` when retries run out, :class:`AuthError` on 401/403.
        """
        limiter = self.limiter(call.endpoint)
        attempt = 0
        while True:
            await limiter.acquire()
            response: httpx.Response | None = None
            problem: str
            try:
                async with self._slots:
                    self.stats["requests"] += 1
                    response = await self._client.request(
                        call.method,
                        call.url or call.path,
                        content=call.body,
                        headers=self._headers(call),
                    )
                status = response.status_code
                if status < 400:
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
                problem = f"{call.method} {call.path} answered {status}: {self._excerpt(response)}"
            except httpx.TimeoutException:
                problem = f"{call.method} {call.path} timed out after {self.settings.timeout_s}s"
            except httpx.TransportError as exc:
                problem = f"{call.method} {call.path} failed: {type(exc).__name__}: {exc}"
            if attempt >= self.settings.max_retries:
                raise TransientError(
                    redact(f"{problem} (gave up after {attempt + 1} attempts)", self.settings.secrets),
                    status_code=response.status_code if response is not None else None,
                )
            delay = retry_delay(response, attempt, self.settings)
            if response is not None and response.status_code == 429:
                limiter.pause_until(time.monotonic() + delay)
            self.stats["retries"] += 1
            attempt += 1
            await asyncio.sleep(delay)

    def _excerpt(self, response: httpx.Response) -> str:
        text = response.text[:300].strip() or "(empty body)"
        return redact(text, self.settings.secrets)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> DeliveryClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()
