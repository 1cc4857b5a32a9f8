"""ODP against the conformance suite (profiles mirror, a list audience, events)."""

from __future__ import annotations

from typing import Any

from reverse_etl.destinations.odp.config import list_id_for
from reverse_etl.sandbox import Faults
from reverse_etl.sandbox.base import Emulator
from reverse_etl.sandbox.odp import OdpEmulator
from tests.conformance.base import DEST, DestinationConformance, Row

LIST = "Conformance"


class TestOdpConformance(DestinationConformance):
    batch_path = "/v3/profiles"

    def make_emulator(self, faults: Faults) -> Emulator:
        return OdpEmulator(faults=faults)

    def destination(self, url: str) -> dict[str, Any]:
        return {"type": "odp", "base_url": f"{url}/v3", "api_key": "sandbox-key"}

    def sync(self, kind: str) -> dict[str, Any]:
        base = {"name": f"odp_{kind}", "model": "rows", "destination": DEST, "type": kind, "primary_key": "key",
                "identifiers": {"customer_id": "user_id"}}
        if kind == "records":
            return {**base, "mode": "mirror", "fields": {"score": "value"}}
        if kind == "audience":
            return {**base, "mode": "mirror", "audience": {"list": LIST}}
        return {**base, "event": {"type": "order", "action": "purchase", "time": "ts"},
                "fields": {"ref": "key", "amount": "value"}}

    def held(self, emulator: Emulator, kind: str) -> dict[str, Any]:
        assert isinstance(emulator, OdpEmulator)
        if kind == "records":
            return {p["customer_id"]: p["score"] for p in emulator.profiles() if p.get("score") is not None}
        if kind == "audience":
            lists = emulator.lists()
            list_id = list_id_for(LIST)
            return dict.fromkeys(emulator.list_members(list_id), True) if list_id in lists else {}
        return {e["data"]["ref"]: e["data"]["amount"] for e in emulator.events()}

    def expected(self, kind: str, data: list[Row]) -> dict[str, Any]:
        if kind == "records":
            return {user: value for _, user, value, _ in data}
        if kind == "audience":
            return {user: True for _, user, _, _ in data}
        return {key: value for key, _, value, _ in data}
