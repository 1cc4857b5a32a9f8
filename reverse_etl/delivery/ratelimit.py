"""An asyncio token bucket, plus a shared pause for when the server says "wait until T"."""

from __future__ import annotations

import asyncio
import time


class RateLimiter:
    """At most ``rate`` requests per second, paced evenly; bursts up to ``burst`` tokens.

    The default burst is 2% of a second's requests (at least 1): any window of W seconds then
    holds at most ``rate * W + burst`` requests, under a sliding-window limit (ODP's 10/s; Braze's
    3,000 / 3 s: 2,940 + 19 at the 980/s default) as long as ``rate`` keeps the 2% margin the
    destinations give it. The burst is what absorbs a late event loop: time a timer oversleeps,
    or that the loop spends on other work while a paced run shares two cores with the database
    and the receiver, is banked up to ~20 ms instead of lost (a burst of 1% lost ~1.5% of the
    rate that way, of 1 far more).

    :meth:`pause_until` makes every caller wait until a moment the server named (a 429's
    ``Retry-After`` or ``X-RateLimit-Reset``), so one throttled request slows all of them.
    """

    def __init__(self, rate: float | None, burst: float | None = None) -> None:
        self.rate = rate if rate and rate > 0 else None
        default = max(1.0, float(int(self.rate * 0.02))) if self.rate else 1.0
        self.capacity = max(1.0, burst if burst is not None else default)
        self.tokens = self.capacity
        self.updated = time.monotonic()
        self.paused_until = 0.0
        self._lock = asyncio.Lock()

    def pause_until(self, monotonic_deadline: float) -> None:
        self.paused_until = max(self.paused_until, monotonic_deadline)

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                if now < self.paused_until:
                    await asyncio.sleep(self.paused_until - now)
                    continue
                if self.rate is None:
                    return
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await asyncio.sleep((1 - self.tokens) / self.rate)
