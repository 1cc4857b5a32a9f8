"""Braze against the conformance suite (records mirror, a boolean audience, events)."""

from __future__ import annotations

from typing import Any

from reverse_etl.sandbox import Faults
from reverse_etl.sandbox.base import Emulator
from reverse_etl.sandbox.braze import BrazeEmulator
from tests.conformance.base import DEST, DestinationConformance, Row


class TestBrazeConformance(DestinationConformance):
    batch_path = "/users/track"

    def make_emulator(self, faults: Faults) -> Emulator:
        return BrazeEmulator(faults=faults)

    def destination(self, url: str) -> dict[str, Any]:
        return {"type": "braze", "base_url": url, "api_key": "sandbox-key"}

    def sync(self, kind: str) -> dict[str, Any]:
        base = {"name": f"braze_{kind}", "model": "rows", "destination": DEST, "type": kind, "primary_key": "key",
                "identifiers": {"external_id": "user_id"}}
        if kind == "records":
            return {**base, "mode": "mirror", "fields": {"value": "value"}}
        if kind == "audience":
            return {**base, "mode": "mirror", "audience": {"name": "vip"}}
        return {**base, "event": {"name": "evt", "time": "ts"}, "fields": {"ref": "key", "value": "value"}}

    def held(self, emulator: Emulator, kind: str) -> dict[str, Any]:
        assert isinstance(emulator, BrazeEmulator)
        users = emulator.users()
        if kind == "records":
            return {uid: u["value"] for uid, u in users.items() if "value" in u}
        if kind == "audience":
            return {uid: True for uid, u in users.items() if u.get("vip") is True}
        return {e["properties"]["ref"]: e["properties"]["value"] for u in users.values() for e in u["events"]}

    def expected(self, kind: str, data: list[Row]) -> dict[str, Any]:
        if kind == "records":
            return {user: value for _, user, value, _ in data}
        if kind == "audience":
            return {user: True for _, user, _, _ in data}
        return {key: value for key, _, value, _ in data}
