"""Records syncs to REST definitions: attributes, custom events, audiences.

A row is one object, found by its match field (``key``; an audience's ``name``) or by the id
remembered for the row's primary key, so renaming an object in the model updates it instead of
creating a twin. Missing objects are created (POST), existing ones updated (PATCH, un-archiving
them when the model holds them again), and mirror removals archived (DELETE): Optimizely never
deletes definitions. Each object is one request, paced by the REST rate limit.

A POST is not idempotent, and an audience name is not unique: a POST resent after an attempt
whose answer was lost (a dropped connection, a timeout, a 5xx after the work) could create a
second audience. So creates are sent as calls that are never resent after such an attempt
(``Call.idempotent``): the row stays unacknowledged, and the next run's listing finds the object
the lost attempt created (by its key or name) and updates it instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from reverse_etl.config.syncs import SyncConfig
from reverse_etl.delivery.client import Call, DeliveryClient
from reverse_etl.delivery.transport import Answer
from reverse_etl.destinations.base import ChunkResult, DeltaRow, Writer, dumps
from reverse_etl.destinations.optimizely import payload, rest
from reverse_etl.destinations.optimizely.config import OBJECTS
from reverse_etl.errors import TransientError

if TYPE_CHECKING:
    from reverse_etl.destinations.optimizely.destination import OptimizelyDestination


class DefinitionWriter(Writer):
    """Creates, updates and archives one kind of REST definition, one request per row."""

    destination: OptimizelyDestination

    def __init__(self, destination: OptimizelyDestination, sync: SyncConfig, client: DeliveryClient) -> None:
        super().__init__(destination, sync, client)
        assert sync.object is not None
        self.kind = OBJECTS[sync.object]
        self.match_column = sync.identifiers[self.kind.match]
        self.project_id = destination.config.project_id
        self.ids_key = f"{destination.memory_scope()}/{self.kind.name}/ids/{sync.name}"
        self.remembered: dict[str, int] = {}  # row primary key -> object id
        self.leaving: set[str] = set()  # row primary keys whose removal this run sent
        self.by_id: dict[int, dict[str, Any]] = {}
        self.by_match: dict[str, dict[str, Any]] = {}

    async def prepare(self) -> None:
        """Load the remembered ids and every existing object of the kind in the project."""
        raw = self.state.get(self.ids_key)
        loaded = orjson.loads(raw) if raw else {}
        self.remembered = {str(k): int(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}
        what = f"sync {self.sync.name!r}: listing {self.kind.name}"
        objects = await rest.list_all(self.client, self.kind.index, self.project_id, what=what)
        if self.kind.name == "custom_events":  # /events also lists click and pageview events
            objects = [o for o in objects if o.get("event_type", "custom") == "custom"]
        self.by_id = {int(o["id"]): o for o in objects if isinstance(o.get("id"), int)}
        # A live object wins over an archived twin, then the oldest.
        for obj in sorted(self.by_id.values(), key=lambda o: (bool(o.get("archived")), o["id"])):
            self.by_match.setdefault(str(obj.get(self.kind.match)), obj)

    async def write(self, rows: Sequence[DeltaRow]) -> ChunkResult:
        result = ChunkResult()
        removals = [r for r in rows if r.action == "remove"]
        others = [r for r in rows if r.action != "remove"]
        # An object removed under one key and kept under another in the same chunk is kept.
        kept = {str(r.values.get(self.match_column)) for r in others}
        # Removals first, so an archive never races the update of the same object; updates
        # before creates, so a key or name freed by a rename is free when a new row takes it
        # (which rows update is known once the removals handed their objects over).
        try:
            await self._each(removals, lambda r: self._remove(r, kept), result)
            updates = {r.seq for r in others if self._find(r) is not None}
            await self._each([r for r in others if r.seq in updates], self._upsert, result)
            await self._each([r for r in others if r.seq not in updates], self._upsert, result)
        finally:
            # Ids learnt before a stop are kept too: they are true whatever the snapshot says.
            self.state.put(self.ids_key, orjson.dumps(self.remembered).decode())
        return result

    @staticmethod
    async def _each(rows: list[DeltaRow], step: Callable[[DeltaRow], Awaitable[ChunkResult]], result: ChunkResult) -> None:
        """Run ``step`` for every row at once (paced by the client) and merge what each did."""
        for outcome in await asyncio.gather(*(step(r) for r in rows), return_exceptions=True):
            if isinstance(outcome, BaseException):  # AuthError, or a bug: stop the run
                raise outcome
            result.merge(outcome)

    def _find(self, row: DeltaRow) -> dict[str, Any] | None:
        """The object a row writes: the one remembered for its primary key, else the one of its
        key or name - unless another row holds that one (it is being renamed away: this row
        is a new definition under the freed name, and gets an object of its own; a row leaving
        the model hands its object over)."""
        key = payload.row_key(self.sync, row)
        object_id = self.remembered.get(key)
        if object_id is not None and object_id in self.by_id:
            return self.by_id[object_id]
        match = row.values.get(self.match_column)
        obj = None if match is None else self.by_match.get(str(match))
        return None if obj is None or self._held_by_another(obj["id"], key) else obj

    def _held_by_another(self, object_id: int, key: str) -> bool:
        """Whether a row other than ``key``, and not leaving the model, holds the object."""
        return any(held == object_id for k, held in self.remembered.items() if k != key and k not in self.leaving)

    async def _remove(self, row: DeltaRow, kept: set[str]) -> ChunkResult:
        key = payload.row_key(self.sync, row)
        self.leaving.add(key)  # its object may go to a new row under the same key or name
        obj = self._find(row)
        # An object another row holds now (it took the key while this removal was pending) is
        # that row's: archiving it would take it from the model.
        if (obj is None or obj.get("archived") or str(obj.get(self.kind.match)) in kept
                or self._held_by_another(obj["id"], key)):
            self.remembered.pop(key, None)
            return ChunkResult(accepted=[row.seq])
        response = await self._send(Call("DELETE", self.kind.item(self.project_id, obj["id"]), None, (row.seq,), rest.ENDPOINT))
        if isinstance(response, str):
            return ChunkResult(failed={row.seq: response})
        if response.is_success or response.status_code == 404:
            obj["archived"] = True
            self.remembered.pop(key, None)
            return ChunkResult(accepted=[row.seq])
        reason = f"archiving {self.kind.name} {obj['id']} failed: {rest.error_text(response)}"
        return ChunkResult().reject([row.seq], reason, response)

    async def _upsert(self, row: DeltaRow) -> ChunkResult:
        key = payload.row_key(self.sync, row)
        obj = self._find(row)
        if obj is not None and row.action == "insert":
            self.remembered[key] = int(obj["id"])  # insert never updates what exists
            return ChunkResult(accepted=[row.seq])
        if obj is None and row.action == "update":
            match = row.values.get(self.match_column)
            return ChunkResult(rejected={row.seq: (
                f"no {self.kind.name} with {self.kind.match} {match!r} in project {self.project_id} (mode update never creates)"
            )})
        body, problem = payload.definition_body(
            self.kind, self.sync, row.values, project_id=self.project_id, create=obj is None,
            restore=bool(obj is not None and obj.get("archived")),
        )
        if body is None:
            return ChunkResult(rejected={row.seq: problem or "invalid row"})
        if obj is None:
            call = Call("POST", self.kind.collection(self.project_id), dumps(body), (row.seq,), rest.ENDPOINT,
                        idempotent=False)
        else:
            call = Call("PATCH", self.kind.item(self.project_id, obj["id"]), dumps(body), (row.seq,), rest.ENDPOINT)
        response = await self._send(call)
        if isinstance(response, str):
            return ChunkResult(failed={row.seq: response})
        if not response.is_success:
            verb = "creating" if obj is None else "updating"
            return ChunkResult().reject([row.seq], f"{verb} {self.kind.name} failed: {rest.error_text(response)}", response)
        try:
            saved = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            saved = None
        if isinstance(saved, dict) and isinstance(saved.get("id"), int):
            self.by_id[saved["id"]] = saved
            self.by_match[str(saved.get(self.kind.match))] = saved
            self.remembered[key] = saved["id"]
        elif obj is not None:
            self.remembered[key] = int(obj["id"])
        return ChunkResult(accepted=[row.seq])

    async def _send(self, call: Call) -> Answer | str:
        """The response, or the reason it could not be delivered (retries exhausted)."""
        try:
            return await self.client.send(call)
        except TransientError as exc:
            return exc.message
