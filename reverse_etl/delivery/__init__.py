"""The shared HTTP delivery layer: every destination sends through it.

It owns connection reuse, concurrency, rate limits, retries with backoff and jitter, and the
classification of responses into success / transient / terminal. Destinations only build
requests (:class:`Call`) and read per-row results from responses.
"""

from __future__ import annotations

from reverse_etl.delivery.client import Call, DeliveryClient, DeliverySettings, redact
from reverse_etl.delivery.ratelimit import RateLimiter
from reverse_etl.delivery.transport import AiohttpExchange, Answer, Exchange, HttpxExchange, RawAnswer

__all__ = [
    "AiohttpExchange", "Answer", "Call", "DeliveryClient", "DeliverySettings", "Exchange", "HttpxExchange", "RateLimiter",
    "RawAnswer", "redact",
]
