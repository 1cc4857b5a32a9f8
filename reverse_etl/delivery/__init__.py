"""The shared HTTP delivery layer: every destination sends through it.

It owns connection reuse, concurrency, rate limits, retries with backoff and jitter, and the
classification of responses into success / transient / terminal. Destinations only build
requests (:class:`Call`) and read per-row results from responses.
"""

from __future__ import annotations

from reverse_etl.delivery.client import Call, DeliveryClient, DeliverySettings
from reverse_etl.delivery.ratelimit import RateLimiter

__all__ = ["Call", "DeliveryClient", "DeliverySettings", "RateLimiter"]
