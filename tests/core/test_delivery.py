"""The shared delivery layer: retries, backoff, pacing, credentials only to their own host."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from reverse_etl.delivery.client import AuthError, Call, DeliveryClient, DeliverySettings
from reverse_etl.delivery.ratelimit import RateLimiter
from reverse_etl.errors import TransientError


def settings(**extra: object) -> DeliverySettings:
    base = {"base_url": "https://api.example.test", "headers": {"User-Agent": "t"},
            "auth_headers": {"Authorization": "Bearer secret-token"}, "max_retries": 3, "backoff_base_s": 0.001}
    base.update(extra)
    return DeliverySettings(**base)  # type: ignore[arg-type]


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_credentials_never_go_to_another_host() -> None:
    seen: list[tuple[str, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.host, request.headers.get("authorization")))
        return httpx.Response(204)

    async def go() -> None:
        async with DeliveryClient(settings(), httpx.MockTransport(handler)) as client:
            await client.send(Call("POST", "/v2/x", b"{}"))
            await client.send(Call("POST", "/v1/events", b"{}", url="https://logx.example.test/v1/events"))
            await client.send(Call("POST", "/v2/y", b"{}", url="https://api.example.test/v2/y"))

    run(go())
    assert seen == [("api.example.test", "Bearer secret-token"), ("logx.example.test", None),
                    ("api.example.test", "Bearer secret-token")]


def test_retries_5xx_and_429_then_succeeds() -> None:
    answers = iter([httpx.Response(503), httpx.Response(429, headers={"Retry-After": "0"}), httpx.Response(201)])

    async def go() -> int:
        async with DeliveryClient(settings(), httpx.MockTransport(lambda r: next(answers))) as client:
            return (await client.send(Call("POST", "/x", b"{}"))).status_code

    assert run(go()) == 201


def test_gives_up_after_max_retries_with_a_transient_error_that_hides_the_secret() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, text="boom secret-token")

    async def go() -> None:
        async with DeliveryClient(settings(secrets=("secret-token",)), httpx.MockTransport(handler)) as client:
            await client.send(Call("POST", "/x", b"{}"))

    with pytest.raises(TransientError) as exc:
        run(go())
    assert "gave up after 4 attempts" in str(exc.value) and "secret-token" not in str(exc.value)


def test_terminal_4xx_is_returned_not_retried_and_401_raises() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(400 if request.url.path == "/bad" else 401)

    async def go() -> int:
        async with DeliveryClient(settings(), httpx.MockTransport(handler)) as client:
            status = (await client.send(Call("POST", "/bad", b"{}"))).status_code
            await client.send(Call("POST", "/auth", b"{}"))
            return status

    with pytest.raises(AuthError):
        run(go())
    assert len(calls) == 2


def test_rate_limiter_paces_evenly() -> None:
    async def go() -> float:
        limiter = RateLimiter(50)
        start = time.monotonic()
        for _ in range(11):
            await limiter.acquire()
        return time.monotonic() - start

    elapsed = run(go())
    assert 0.18 <= elapsed < 0.6  # 10 intervals of 20 ms, no initial burst beyond one request
