"""The Braze destination and its writer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
import orjson

from reverse_etl.config.syncs import SyncConfig
from reverse_etl.delivery.client import Call, DeliveryClient
from reverse_etl.destinations.base import BatchWriter, ChunkResult, DeltaRow, Destination, dumps
from reverse_etl.destinations.braze import payload
from reverse_etl.destinations.braze.config import (
    IDENTIFIERS,
    INSTANCES,
    BrazeAudience,
    BrazeConfig,
    BrazeEvent,
)


class BrazeDestination(Destination):
    type_name = "braze"
    config_model = BrazeConfig
    default_batch_size = 75
    max_batch_size = 75
    default_requests_per_second = 1000.0  # 3,000 requests / 3 s per instance
    supported = {
        "records": ("upsert", "update", "insert", "mirror"),
        "audience": ("add", "remove", "mirror"),
        "events": ("insert",),
    }
    config: BrazeConfig

    def check_sync(self, sync: SyncConfig) -> list[str]:
        problems = super().check_sync(sync)
        unknown = [k for k in sync.identifiers if k not in IDENTIFIERS]
        if unknown:
            problems.append(f"unknown Braze identifier(s) {unknown}; use one of {', '.join(IDENTIFIERS)}")
        if len(sync.identifiers) > 1:
            problems.append("a Braze object takes exactly one identifier (e.g. {external_id: user_id})")
        if sync.on_remove == "delete" and "external_id" not in sync.identifiers:
            problems.append("on_remove: delete needs the external_id identifier")
        spec: Any = None
        try:
            if sync.type == "audience":
                spec = BrazeAudience.model_validate(sync.audience)
            elif sync.type == "events":
                spec = BrazeEvent.model_validate(sync.event)
        except ValueError as exc:
            problems.append(f"invalid `{sync.type if sync.type == 'audience' else 'event'}:` for Braze: {exc}")
        if sync.type == "audience" and spec is not None and sync.fields:
            problems.append("an audience sync sends membership only; move `fields:` to a records sync")
        if sync.object or sync.catalog:
            problems.append("Braze catalogs are not supported yet (catalog:/object:)")
        return problems

    def extra_columns(self, sync: SyncConfig) -> list[str]:
        if sync.type != "events" or not sync.event:
            return []
        event = BrazeEvent.model_validate(sync.event)
        return [c for c in (event.time, event.name_column) if c]

    def base_url(self) -> str:
        if self.config.base_url:
            return self.config.base_url
        if self.config.instance:
            return INSTANCES[self.config.instance.upper()]
        raise ValueError("Braze destination has neither base_url nor instance")

    def auth_headers(self) -> dict[str, str]:
        key = self.config.api_key.get_secret_value() if self.config.api_key else "sandbox-key"
        return {"Authorization": f"Bearer {key}"}

    def writer(self, sync: SyncConfig, client: DeliveryClient) -> BrazeWriter:
        return BrazeWriter(self, sync, client)


class BrazeWriter(BatchWriter):
    destination: BrazeDestination

    def build(self, rows: Sequence[DeltaRow]) -> tuple[list[Call], dict[int, str]]:
        rejected: dict[int, str] = {}
        calls: list[Call] = []
        deletes = [r for r in rows if r.action == "remove" and self.sync.on_remove == "delete"]
        tracked = [r for r in rows if not (r.action == "remove" and self.sync.on_remove == "delete")]
        array = "events" if self.sync.type == "events" else "attributes"
        build = payload.event_object if array == "events" else payload.attribute_object
        objects: list[tuple[int, dict[str, Any]]] = []
        for row in tracked:
            obj, problem = build(self.sync, row)
            if obj is None:
                rejected[row.seq] = problem or "invalid row"
            else:
                objects.append((row.seq, obj))
        for batch in payload.chunks(objects, self.destination.batch_size):
            calls.extend(self._track_calls(array, list(batch), rejected))
        for batch in payload.chunks(deletes, 50):
            ids = [str(r.values[self.sync.identifiers["external_id"]]) for r in batch]
            calls.append(Call("POST", "/users/delete", dumps({"external_ids": ids}), tuple(r.seq for r in batch), "users/delete"))
        return calls, rejected

    def _track_calls(self, array: str, batch: list[tuple[int, dict[str, Any]]], rejected: dict[int, str]) -> list[Call]:
        body = dumps({array: [obj for _, obj in batch]})
        if len(body) <= payload.MAX_BODY_BYTES:
            return [Call("POST", "/users/track", body, tuple(seq for seq, _ in batch), "users/track")]
        if len(batch) == 1:
            rejected[batch[0][0]] = f"object is {len(body)} bytes, over Braze's 4 MB request limit"
            return []
        half = len(batch) // 2
        return self._track_calls(array, batch[:half], rejected) + self._track_calls(array, batch[half:], rejected)

    def outcome(self, call: Call, response: httpx.Response) -> ChunkResult:
        result = ChunkResult()
        try:
            body: Any = orjson.loads(response.content) if response.content else {}
        except orjson.JSONDecodeError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        if response.status_code >= 400:
            reason = str(body.get("message") or response.text[:200] or f"HTTP {response.status_code}")
            indexed = _indexed_errors(body)
            for i, seq in enumerate(call.seqs):
                result.rejected[seq] = f"{indexed.get(i, reason)} (HTTP {response.status_code})"
            return result
        if call.path == "/users/delete":
            result.accepted.extend(call.seqs)
            return result
        indexed = _indexed_errors(body)
        for i, seq in enumerate(call.seqs):
            if i in indexed:
                result.rejected[seq] = indexed[i]
            else:
                result.accepted.append(seq)
        return result


def _indexed_errors(body: dict[str, Any]) -> dict[int, str]:
    out: dict[int, str] = {}
    for err in body.get("errors") or []:
        if isinstance(err, dict) and isinstance(err.get("index"), int):
            out[err["index"]] = str(err.get("type") or err.get("message") or "rejected")
    return out
