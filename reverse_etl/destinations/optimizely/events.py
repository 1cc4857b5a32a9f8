"""Events syncs to the Event API (``logx``): one visitor / snapshot / event per row.

Every event carries a ``uuid`` derived from the sync and the row's primary key, and the Event
API stores an (entity_id, uuid, timestamp) once, so a resend after a crash or a ``--full-resync``
duplicates nothing. A batch is all or nothing; a rejected batch is split in halves until the
rows at fault are alone, so one bad row does not hold back the others.

The Event API takes no credentials: its requests go through a client of their own that never
carries the REST token.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import httpx

import reverse_etl
from reverse_etl.config.syncs import SyncConfig
from reverse_etl.delivery.client import Call, DeliveryClient
from reverse_etl.destinations.base import ChunkResult, DeltaRow, Writer, dumps, unreadable_success
from reverse_etl.destinations.optimizely import payload, rest
from reverse_etl.destinations.optimizely.config import OptimizelyEvent
from reverse_etl.errors import TerminalError, TransientError

if TYPE_CHECKING:
    from reverse_etl.destinations.optimizely.destination import OptimizelyDestination

Batch = list[tuple[int, dict[str, Any]]]


class EventWriter(Writer):
    """Posts conversion events in batches under the Event API's size limit."""

    destination: OptimizelyDestination

    def __init__(self, destination: OptimizelyDestination, sync: SyncConfig, client: DeliveryClient) -> None:
        super().__init__(destination, sync, client)
        self.spec = OptimizelyEvent.model_validate(sync.event)
        config = destination.config
        self.project_id = config.project_id
        self.events_url = destination.events_url()
        self.head = payload.envelope(config.account_id, config.project_id, reverse_etl.__version__)
        self.entity_id = self.spec.entity_id
        self.transport: httpx.AsyncBaseTransport | None = None  # tests: where the Event API client sends
        self.id_key = f"{destination.memory_scope()}/custom_events/key/{self.spec.key}"

    async def prepare(self) -> None:
        """Learn the custom event's entity id from its key (or create the event if asked to)."""
        if self.entity_id is not None:
            return
        what = f"sync {self.sync.name!r}: custom event {self.spec.key!r}"
        remembered = self.state.get(self.id_key)
        obj = await rest.find(
            self.client,
            index="/events",
            item=f"/events/{remembered}" if remembered and remembered.isdigit() else None,
            project_id=self.project_id,
            field="key",
            value=self.spec.key,
            what=what,
        )
        if obj is None and self.spec.create_if_missing:
            body = {"key": self.spec.key, "name": self.spec.key, "event_type": "custom"}
            obj = await rest.create(self.client, f"/projects/{self.project_id}/custom_events", body, what=what)
        if obj is None:
            raise TerminalError(
                f"{what}: no custom event has this key in Optimizely project {self.project_id}",
                hint="create it in Optimizely (or with a records sync, object: custom_events), "
                "set event.create_if_missing: true, or give event.entity_id",
            )
        if obj.get("archived"):
            raise TerminalError(f"{what} is archived in Optimizely project {self.project_id} (id {obj['id']})",
                                hint="unarchive it in Optimizely: conversions of an archived event are not counted")
        self.entity_id = str(obj["id"])
        self.state.put(self.id_key, self.entity_id)

    async def write(self, rows: Sequence[DeltaRow]) -> ChunkResult:
        assert self.entity_id is not None, "prepare() first"
        result = ChunkResult()
        visitors: Batch = []
        for row in rows:
            visitor, problem = payload.conversion(self.sync, self.spec, self.entity_id, row)
            if visitor is None:
                result.rejected[row.seq] = problem or "invalid event"
            else:
                visitors.append((row.seq, visitor))
        batches, too_big = payload.pack(visitors, self.head, max_count=self.destination.batch_size)
        result.rejected.update(too_big)
        settings = replace(
            self.client.settings,
            base_url=self.events_url,
            headers={"User-Agent": "reverse_etl"},
            auth_headers={},  # the Event API takes no credentials: never send it the REST token
            requests_per_second=None,  # the Event API is not rate limited like REST
            endpoint_rates={},
        )
        async with DeliveryClient(settings, self.transport) as events:
            outcomes = await asyncio.gather(*(self._deliver(events, b) for b in batches), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
            result.merge(outcome)
        return result

    async def _deliver(self, events: DeliveryClient, batch: Batch) -> ChunkResult:
        seqs = tuple(seq for seq, _ in batch)
        body = dumps({**self.head, "visitors": [visitor for _, visitor in batch]})
        try:
            response = await events.send(Call("POST", "/v1/events", body, seqs, "events", url=self.events_url))
        except TransientError as exc:
            return ChunkResult(failed={seq: exc.message for seq in seqs})
        if response.is_success:
            if garbled := unreadable_success(response, empty_ok=True):  # the Event API answers 204, no body
                return ChunkResult(failed=dict.fromkeys(seqs, garbled))
            return ChunkResult(accepted=list(seqs))
        if response.status_code in (400, 413) and len(batch) > 1:
            half = len(batch) // 2
            parts = await asyncio.gather(self._deliver(events, batch[:half]), self._deliver(events, batch[half:]))
            merged = ChunkResult()
            for part in parts:
                merged.merge(part)
            return merged
        reason = f"the Event API refused the event: {rest.error_text(response)}"
        return ChunkResult(rejected={seq: reason for seq in seqs})
