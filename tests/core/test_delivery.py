"""The shared delivery layer: retries, backoff, pacing, credentials only to their own host."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from reverse_etl.delivery.client import AuthError, Call, DeliveryClient, DeliverySettings
from reverse_etl.delivery.ratelimit import RateLimiter
from reverse_etl.errors import TransientError, UnreachableError


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


def test_default_burst_is_two_percent_of_a_second() -> None:
    assert RateLimiter(980).capacity == 19  # Braze: 2,940 + 19 in any 3 s, under its 3,000
    assert RateLimiter(10).capacity == 1  # ODP's 10/s sliding window: never more than one at once
    assert RateLimiter(None).rate is None


def test_a_429_pauses_the_whole_endpoint_until_retry_after() -> None:
    seen: list[float] = []
    answers = iter([httpx.Response(429, headers={"Retry-After": "0.3"})] + [httpx.Response(201)] * 3)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(time.monotonic())
        return next(answers)

    async def go() -> None:
        async with DeliveryClient(settings(concurrency=4), httpx.MockTransport(handler)) as client:
            first = asyncio.create_task(client.send(Call("POST", "/x", b"{}")))
            await asyncio.sleep(0.05)  # the 429 is in: the others must wait for the pause too
            await asyncio.gather(first, client.send(Call("POST", "/y", b"{}")), client.send(Call("POST", "/z", b"{}")))

    run(go())
    assert len(seen) == 4 and all(t - seen[0] >= 0.28 for t in seen[1:])


def test_x_ratelimit_reset_is_honoured_when_there_is_no_retry_after() -> None:
    answers = iter([httpx.Response(429, headers={"X-RateLimit-Reset": str(time.time() + 0.4)}), httpx.Response(201)])

    async def go() -> float:
        async with DeliveryClient(settings(), httpx.MockTransport(lambda r: next(answers))) as client:
            start = time.monotonic()
            await client.send(Call("POST", "/x", b"{}"))
            return time.monotonic() - start

    assert 0.25 <= run(go()) < 2


def test_aiohttp_exchange_against_a_real_server_timeouts_and_drops() -> None:
    from reverse_etl.delivery.transport import AiohttpExchange
    from reverse_etl.sandbox import Faults, SandboxServer
    from reverse_etl.sandbox.braze import BrazeEmulator

    headers = {"Authorization": "Bearer sandbox-key", "Content-Type": "application/json"}
    body = b'{"attributes":[{"external_id":"u1","a":1}]}'

    async def call(url: str, timeout_s: float = 5.0) -> Any:
        exchange = AiohttpExchange(connections=2, timeout_s=timeout_s)
        try:
            return await exchange("POST", f"{url}/users/track", headers, body)
        finally:
            await exchange.aclose()

    with SandboxServer(BrazeEmulator()) as server:
        answer = run(call(server.url))
        assert (answer.status_code, answer.is_success) == (201, True)
        assert answer.headers.get("content-type") == "application/json" and b"success" in answer.content
    with SandboxServer(BrazeEmulator(faults=Faults(latency_ms=300))) as server, pytest.raises(httpx.TimeoutException):
        run(call(server.url, timeout_s=0.05))
    with SandboxServer(BrazeEmulator(faults=Faults(drop_rate=1.0))) as server, pytest.raises(httpx.TransportError):
        run(call(server.url))


def test_raw_answers_read_like_httpx_responses() -> None:
    from reverse_etl.delivery.transport import RawAnswer

    answer = RawAnswer(200, {"link": '<https://api.test/v2/x?page=2>; rel="next", <https://api.test/v2/x?page=9>; rel="last"'}, b"ok")
    assert answer.links["next"]["url"] == "https://api.test/v2/x?page=2" and answer.links["last"]["url"].endswith("9")
    assert (answer.text, answer.is_success) == ("ok", True)


def _fail(kind: str) -> httpx.Response:
    """An attempt that fails as ``kind``: a status code, or a transport exception."""
    request = httpx.Request("POST", "https://api.example.test/x")
    exceptions: dict[str, Exception] = {
        "connect": httpx.ConnectError("refused", request=request),
        "connect-timeout": httpx.ConnectTimeout("slow connect", request=request),
        "read-timeout": httpx.ReadTimeout("no answer", request=request),
        "dropped": httpx.RemoteProtocolError("server disconnected", request=request),
    }
    if kind in exceptions:
        raise exceptions[kind]
    return httpx.Response(int(kind), headers={"Retry-After": "0"})


@pytest.mark.parametrize(("before", "doubtful"), [
    ([], False),
    (["429"], False),  # throttled before any work
    (["408"], False),
    (["connect"], False),  # never reached the server
    (["connect-timeout"], False),
    (["500"], True),  # the work may be done and the answer a failure
    (["503"], True),
    (["read-timeout"], True),  # sent; its answer never came
    (["dropped"], True),
    (["429", "dropped", "429"], True),  # once in doubt, the doubt stays
])
def test_an_answer_after_an_attempt_that_may_have_been_applied_is_doubtful(before: list[str], doubtful: bool) -> None:
    attempts = iter(before)

    def handler(request: httpx.Request) -> httpx.Response:
        kind = next(attempts, None)
        return httpx.Response(400, json={"errors": ["refused"]}) if kind is None else _fail(kind)

    async def go() -> bool:
        async with DeliveryClient(settings(max_retries=5), httpx.MockTransport(handler)) as client:
            answer = await client.send(Call("POST", "/x", b"{}"))
            assert answer.status_code == 400
            return answer.doubtful

    assert run(go()) is doubtful


@pytest.mark.parametrize(("before", "sent"), [(["429", "503"], 2), (["connect", "dropped"], 2), (["read-timeout"], 1)])
def test_a_call_that_is_not_idempotent_is_not_resent_after_an_attempt_that_may_have_been_applied(
    before: list[str], sent: int
) -> None:
    attempts = iter(before)
    seen: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(1)
        kind = next(attempts, None)
        return httpx.Response(201) if kind is None else _fail(kind)

    async def go() -> None:
        async with DeliveryClient(settings(max_retries=5), httpx.MockTransport(handler)) as client:
            await client.send(Call("POST", "/create", b"{}", idempotent=False))

    with pytest.raises(TransientError, match="may have been applied"):
        run(go())
    assert len(seen) == sent  # throttles and refused connections are retried; the doubtful attempt is the last


def test_a_call_that_is_not_idempotent_is_retried_while_nothing_can_have_been_applied() -> None:
    attempts = iter(["429", "connect", "408"])

    def handler(request: httpx.Request) -> httpx.Response:
        kind = next(attempts, None)
        return httpx.Response(201) if kind is None else _fail(kind)

    async def go() -> int:
        async with DeliveryClient(settings(max_retries=5), httpx.MockTransport(handler)) as client:
            return (await client.send(Call("POST", "/create", b"{}", idempotent=False))).status_code

    assert run(go()) == 201


@pytest.mark.parametrize("kind", ["connect", "connect-timeout"])
def test_a_destination_never_connected_to_is_unreachable_until_it_answers(kind: str) -> None:
    up = [False]
    attempts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        attempts.append(request.url.path)
        return httpx.Response(200, text="{}") if up[0] else _fail(kind)

    async def go() -> tuple[DeliveryClient, list[BaseException]]:
        async with DeliveryClient(settings(max_retries=2), httpx.MockTransport(handler)) as client:
            errors: list[BaseException] = []
            with pytest.raises(UnreachableError, match="gave up after 3 attempts"):
                await client.send(Call("POST", "/first", b"{}"))
            assert client.unreachable is not None and "/first" in client.unreachable
            try:  # a later call is not tried at all while nothing answers
                await client.send(Call("POST", "/second", b"{}"))
            except UnreachableError as exc:
                errors.append(exc)
            up[0] = True
            client.unreachable = None  # as if another call got an answer
            assert (await client.send(Call("POST", "/third", b"{}"))).status_code == 200
            return client, errors

    client, errors = run(go())
    assert attempts == ["/first"] * 3 + ["/third"] and len(errors) == 1 and "not sent" in str(errors[0])
    assert client.unreachable is None


def test_an_answer_clears_unreachable_and_a_dropped_connection_is_not_unreachable() -> None:
    answers = iter(["dropped", "dropped", "dropped", "200"])

    def handler(request: httpx.Request) -> httpx.Response:
        kind = next(answers)
        return httpx.Response(200, text="{}") if kind == "200" else _fail(kind)

    async def go() -> DeliveryClient:
        async with DeliveryClient(settings(max_retries=2), httpx.MockTransport(handler)) as client:
            with pytest.raises(TransientError) as exc:  # connected, then dropped: the host is there
                await client.send(Call("POST", "/x", b"{}"))
            assert not isinstance(exc.value, UnreachableError) and client.unreachable is None
            assert (await client.send(Call("POST", "/x", b"{}"))).status_code == 200
            return client

    run(go())
