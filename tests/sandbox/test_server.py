"""The sandbox HTTP server and the emulator base: faults, rate limits, persistence."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from reverse_etl.sandbox import Emulator, Faults, RateLimit, Request, Response, SandboxServer


class Counter(Emulator):
    name = "counter"

    def reset(self) -> None:
        self.total = 0

    def handle(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return Response.json(401, {"message": "Invalid API key"})
        self.total += int(request.json()["n"])
        return Response.json(201, {"total": self.total})

    def dump(self) -> dict[str, Any]:
        return {"total": self.total}

    def load(self, data: dict[str, Any]) -> None:
        self.total = data["total"]


def test_serves_real_http_on_loopback_and_keeps_state(tmp_path: Path) -> None:
    state = tmp_path / "counter.json"
    with SandboxServer(Counter(state_path=state)) as server:
        assert server.url.startswith("http://127.0.0.1:")
        with httpx.Client(base_url=server.url, headers={"Authorization": "Bearer sandbox-key"}) as client:
            assert client.post("/add", json={"n": 2}).json() == {"total": 2}
            assert client.post("/add", json={"n": 3}).json() == {"total": 5}
            assert client.post("/add", json={"n": 1}, headers={"Authorization": "Bearer wrong"}).status_code == 401
    # state survives a restart
    with SandboxServer(Counter(state_path=state)) as server, httpx.Client(
        base_url=server.url, headers={"Authorization": "Bearer sandbox-key"}
    ) as client:
        assert client.post("/add", json={"n": 1}).json() == {"total": 6}


def test_rate_limit_answers_429_with_retry_after() -> None:
    emulator = Counter(rate_limit=RateLimit(requests=3, per_seconds=60))
    with SandboxServer(emulator) as server, httpx.Client(base_url=server.url) as client:
        statuses = [
            client.post("/add", json={"n": 1}, headers={"Authorization": "Bearer sandbox-key"}).status_code
            for _ in range(5)
        ]
        last = client.post("/add", json={"n": 1})
    assert statuses == [201, 201, 201, 429, 429]
    assert last.status_code == 429 and int(last.headers["Retry-After"]) >= 1
    assert emulator.total == 3  # throttled requests change nothing


def test_injected_faults_change_nothing() -> None:
    emulator = Counter(faults=Faults(fail_rate=0.5, drop_rate=0.2, seed=7))
    outcomes: list[int] = []
    with SandboxServer(emulator) as server:
        for _ in range(40):
            with httpx.Client(base_url=server.url, headers={"Authorization": "Bearer sandbox-key"}) as client:
                try:
                    outcomes.append(client.post("/add", json={"n": 1}).status_code)
                except httpx.TransportError:
                    outcomes.append(0)
    assert {0, 201, 503} <= set(outcomes)
    assert emulator.total == outcomes.count(201)


def test_unknown_emulator_names_the_known_ones() -> None:
    from reverse_etl.sandbox import emulator_class

    with pytest.raises(KeyError, match="braze"):
        emulator_class("nope")


def test_a_lost_reply_is_applied_but_never_answered() -> None:
    # what makes a resend a duplicate: the client sees a dropped connection, the state changed
    emulator = Counter(faults=Faults(lost_reply_rate=1.0))
    with SandboxServer(emulator) as server, httpx.Client(base_url=server.url) as client, pytest.raises(httpx.TransportError):
        client.post("/add", json={"n": 4}, headers={"Authorization": "Bearer sandbox-key"})
    assert emulator.total == 4
    ((request, answer),) = emulator.lost_replies
    assert request.json() == {"n": 4} and answer.status == 201


def test_slow_answers_are_late_not_wrong() -> None:
    emulator = Counter(faults=Faults(slow_rate=1.0, slow_ms=150))
    with SandboxServer(emulator) as server, httpx.Client(base_url=server.url) as client:
        started = time.monotonic()
        answer = client.post("/add", json={"n": 1}, headers={"Authorization": "Bearer sandbox-key"})
    assert answer.json() == {"total": 1} and time.monotonic() - started >= 0.15


def fault_pattern(emulator: Emulator, n: int = 60) -> list[int]:
    """The status each of ``n`` requests gets from ``emulator`` (0: connection dropped)."""
    request = Request.build("POST", "/add", {"Authorization": "Bearer sandbox-key"}, b'{"n": 1}')
    return [0 if (answer := emulator.dispatch(request)) is None else answer.status for _ in range(n)]


SEEDED = Faults(fail_rate=0.3, throttle_rate=0.1, drop_rate=0.1, seed=11)


def test_the_same_faults_fail_the_same_requests_whether_given_or_assigned() -> None:
    built = fault_pattern(Counter(faults=SEEDED))
    assert {0, 201, 429, 503} <= set(built)  # every kind of answer: the comparisons below mean something
    later = Counter(faults=Faults(fail_rate=0.5, seed=99))
    fault_pattern(later, 7)  # draws made under other faults must not shift the new sequence
    later.faults = SEEDED
    assert fault_pattern(later) == built
    later.faults = SEEDED  # assigning again starts the sequence again
    assert fault_pattern(later) == built


def test_another_seed_fails_other_requests() -> None:
    emulator = Counter()
    emulator.faults = replace(SEEDED, seed=12)
    assert fault_pattern(emulator) != fault_pattern(Counter(faults=SEEDED))
