"""The emulator base: fault injection, rate limiting, request log and persisted state.

Subclasses implement :meth:`Emulator.handle` (the API itself) and :meth:`Emulator.dump` /
:meth:`Emulator.load` (their state as JSON-able data). Everything that is the same for every
API - faults, rate limits, the request log, saving state between runs - lives here.
"""

from __future__ import annotations

import random
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import orjson

from reverse_etl.sandbox.http import Request, Response


@dataclass(frozen=True)
class Faults:
    """What an emulator does wrong on purpose, for tests of the delivery layer.

    Rates are probabilities per request (``reject_rate`` per object in a request).
    """

    fail_rate: float = 0.0  # answer 503 without applying anything
    throttle_rate: float = 0.0  # answer 429 with Retry-After without applying anything
    drop_rate: float = 0.0  # close the connection without an answer, without applying anything
    reject_rate: float = 0.0  # reject single objects with the API's per-object error
    latency_ms: float = 0.0  # sleep before answering
    seed: int | None = None
    # Apply the request, then close the connection without an answer: the acknowledgement is
    # lost, so the client cannot tell it from a drop and sends again. What makes a resend a
    # duplicate where the API has no idempotency key.
    lost_reply_rate: float = 0.0
    slow_rate: float = 0.0  # share of requests that sleep a further ``slow_ms`` before answering
    slow_ms: float = 0.0

    @property
    def active(self) -> bool:
        return any((self.fail_rate, self.throttle_rate, self.drop_rate, self.reject_rate, self.latency_ms,
                    self.lost_reply_rate, self.slow_rate))


@dataclass(frozen=True)
class RateLimit:
    """At most ``requests`` requests in any ``per_seconds`` window (a fixed window, like Braze)."""

    requests: int
    per_seconds: float


DROP = None  # what dispatch returns to make the server drop the connection


class _Window:
    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self.stamps: deque[float] = deque()
        self.lock = threading.Lock()

    def admit(self) -> tuple[bool, int, float]:
        """Return (admitted, remaining, reset_epoch_seconds)."""
        now = time.monotonic()
        with self.lock:
            while self.stamps and now - self.stamps[0] >= self.limit.per_seconds:
                self.stamps.popleft()
            reset_in = self.limit.per_seconds - (now - self.stamps[0]) if self.stamps else self.limit.per_seconds
            reset = time.time() + reset_in
            if len(self.stamps) >= self.limit.requests:
                return False, 0, reset
            self.stamps.append(now)
            return True, self.limit.requests - len(self.stamps), reset


class Emulator(ABC):
    """One destination API, strict about what it accepts, keeping state tests can assert on."""

    name: ClassVar[str]
    default_api_key: ClassVar[str] = "sandbox-key"
    rng: random.Random  # the fault draws, seeded from ``faults.seed`` whenever faults are set

    def __init__(
        self,
        *,
        api_key: str | None = None,
        faults: Faults | None = None,
        rate_limit: RateLimit | None = None,
        state_path: Path | str | None = None,
    ) -> None:
        self.api_key = api_key or self.default_api_key
        self.lock = threading.RLock()
        self.faults = faults or Faults()  # also seeds self.rng
        self.rate_limit = rate_limit
        self.state_path = Path(state_path) if state_path else None
        self._window = _Window(rate_limit) if rate_limit else None
        self.request_log: list[tuple[str, str, int]] = []  # (method, path, status)
        self.lost_replies: list[tuple[Request, Response]] = []  # applied, then the answer was dropped
        self.reset()
        if self.state_path and self.state_path.exists():
            self.load(orjson.loads(self.state_path.read_bytes()))

    @property
    def faults(self) -> Faults:
        """What this emulator does wrong on purpose."""
        return self._faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        """Set the faults and reseed the draws from ``faults.seed``: the same :class:`Faults`
        fails the same requests, whether given to the constructor or assigned later."""
        with self.lock:
            self._faults = faults
            self.rng = random.Random(faults.seed)

    # --- what subclasses provide -------------------------------------------------------
    @abstractmethod
    def reset(self) -> None:
        """Empty the emulator's state."""

    @abstractmethod
    def handle(self, request: Request) -> Response:
        """Answer one request that passed faults and rate limits. Called under ``self.lock``."""

    @abstractmethod
    def dump(self) -> dict[str, Any]:
        """The emulator's state as JSON-able data (what ``retl sandbox show`` prints)."""

    @abstractmethod
    def load(self, data: dict[str, Any]) -> None:
        """Restore state written by :meth:`dump`."""

    def rate_limit_headers(self, remaining: int, reset: float) -> dict[str, str]:
        """Headers sent with every answer while a rate limit is set; override per API."""
        return {}

    def throttled(self, reset: float) -> Response:
        """The answer to a request over the rate limit; override for the API's own body."""
        retry_after = max(1, int(reset - time.time() + 0.999))
        return Response.json(429, {"message": "Too Many Requests"}, {"Retry-After": str(retry_after)})

    def server_error(self) -> Response:
        return Response.json(503, {"message": "Service Unavailable (injected)"})

    # --- shared machinery --------------------------------------------------------------
    def should_reject(self) -> bool:
        """Draw whether one object is rejected by ``faults.reject_rate``."""
        return self.faults.reject_rate > 0 and self.rng.random() < self.faults.reject_rate

    def dispatch(self, request: Request) -> Response | None:
        """Apply latency, faults and rate limits, then :meth:`handle`. ``None`` drops the connection."""
        f = self.faults
        with self.lock:
            draw = self.rng.random() if f.active else 1.0
            slow = f.slow_rate > 0 and self.rng.random() < f.slow_rate
        delay = f.latency_ms + (f.slow_ms if slow else 0.0)
        if delay:
            time.sleep(delay / 1000)
        if draw < f.drop_rate:
            self._log(request, 0)
            return DROP
        if draw < f.drop_rate + f.fail_rate:
            return self._log(request, self.server_error())
        if draw < f.drop_rate + f.fail_rate + f.throttle_rate:
            return self._log(request, self.throttled(time.time() + 1))
        lose_reply = draw < f.drop_rate + f.fail_rate + f.throttle_rate + f.lost_reply_rate
        extra: dict[str, str] = {}
        if self._window is not None:
            admitted, remaining, reset = self._window.admit()
            extra = self.rate_limit_headers(remaining, reset)
            if not admitted:
                resp = self.throttled(reset)
                return self._log(request, Response(resp.status, resp.body, {**extra, **resp.headers}))
        with self.lock:
            resp = self.handle(request)
            if lose_reply:
                self.lost_replies.append((request, resp))
        if lose_reply:
            self._log(request, 0)
            return DROP
        if extra:
            resp = Response(resp.status, resp.body, {**extra, **resp.headers})
        return self._log(request, resp)

    def _log(self, request: Request, resp: Response | int) -> Response:
        status = resp if isinstance(resp, int) else resp.status
        with self.lock:
            self.request_log.append((request.method, request.path, status))
        return resp  # type: ignore[return-value]

    def save(self) -> None:
        """Write the state to ``state_path`` (atomically), if one is set."""
        if not self.state_path:
            return
        with self.lock:
            data = orjson.dumps(self.dump(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(self.state_path.suffix + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(self.state_path)

    def requests_to(self, path: str, method: str = "POST") -> int:
        """How many requests reached ``path`` (any status), for tests."""
        with self.lock:
            return sum(1 for m, p, _ in self.request_log if m == method and p == path)
