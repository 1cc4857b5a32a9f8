"""Optimizely Experimentation against the conformance suite (a list attribute audience, Event API events).

Records syncs create definitions (attributes, custom events, audiences) one REST call per row,
which has no batching or per-row faults to exercise, so the suite runs audience and events.
"""

from __future__ import annotations

from typing import Any, ClassVar

from reverse_etl.sandbox import Faults
from reverse_etl.sandbox.base import Emulator
from reverse_etl.sandbox.optimizely import OptimizelyEmulator
from tests.conformance.base import DEST, DestinationConformance, Row

PROJECT = 1000
LIST = "retl_conformance"


class TestOptimizelyConformance(DestinationConformance):
    kinds: ClassVar[tuple[str, ...]] = ("audience", "events")
    batch_kind = "events"
    batch_path = "/v1/events"
    reject_faults = Faults(reject_rate=0.7, seed=5)  # a refused Event API batch is resent event by event

    def make_emulator(self, faults: Faults) -> Emulator:
        return OptimizelyEmulator(projects={PROJECT: "web"}, faults=faults)

    def destination(self, url: str) -> dict[str, Any]:
        return {"type": "optimizely", "token": "sandbox-key", "project_id": PROJECT, "account_id": 2000,
                "base_url": f"{url}/v2", "events_url": f"{url}/v1/events", "requests_per_second": 1000}

    def sync(self, kind: str) -> dict[str, Any]:
        if kind == "audience":
            return {"name": "opti_audience", "model": "rows", "destination": DEST, "type": "audience", "mode": "mirror",
                    "primary_key": "user_id", "identifiers": {"user_id": "user_id"},
                    "audience": {"list_attribute": LIST, "key_field": "user_id"}}
        return {"name": "opti_events", "model": "rows", "destination": DEST, "type": "events", "primary_key": "key",
                "identifiers": {"visitor_id": "user_id"}, "fields": {"ref": "key"},
                "event": {"key": "purchase", "time": "ts", "create_if_missing": True}}

    def held(self, emulator: Emulator, kind: str) -> dict[str, Any]:
        assert isinstance(emulator, OptimizelyEmulator)
        if kind == "audience":
            return dict.fromkeys(emulator.list_members(LIST), True) if emulator.list_attribute(LIST) else {}
        return {e["tags"]["ref"]: e["visitor_id"] for e in emulator.conversion_events()}

    def expected(self, kind: str, data: list[Row]) -> dict[str, Any]:
        if kind == "audience":
            return {user: True for _, user, _, _ in data}
        return {key: user for key, user, _, _ in data}
