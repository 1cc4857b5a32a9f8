"""Audience syncs to a Web list attribute, which the API can only replace whole.

There is no add/remove call: every change uploads the full membership as ``list_content``. The
writer keeps what the list holds in the state store (:attr:`Writer.state`, one record per list
attribute with its id and members), applies each chunk's joins and leaves to it, PATCHes the
result, and only then reports the chunk's rows accepted, so the snapshot advances only after an
upload succeeded. The record is per list, not per sync: an ``add`` and a ``remove`` sync of one
list (or two ``mirror`` syncs) each change it by their own delta, as they would with an add/remove
API. Set semantics make a repeated chunk (a crash after the upload, before the acknowledgement)
harmless.

Without a record (first run, or the state store predates it), the list's members are taken from
the sync's snapshot for ``add`` / ``mirror`` (which then holds exactly the members), and a
``remove`` sync refuses to upload a list whose members it cannot know.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

from reverse_etl.config.syncs import SyncConfig
from reverse_etl.delivery.client import Call, DeliveryClient
from reverse_etl.destinations.base import ChunkResult, DeltaRow, Writer, dumps
from reverse_etl.destinations.optimizely import payload, rest
from reverse_etl.destinations.optimizely.config import OptimizelyAudience
from reverse_etl.errors import TerminalError, TransientError

if TYPE_CHECKING:
    from reverse_etl.destinations.optimizely.destination import OptimizelyDestination


class ListAttributeWriter(Writer):
    """Uploads the whole membership of one list attribute after each chunk of joins / leaves."""

    destination: OptimizelyDestination

    def __init__(self, destination: OptimizelyDestination, sync: SyncConfig, client: DeliveryClient) -> None:
        super().__init__(destination, sync, client)
        self.spec = OptimizelyAudience.model_validate(sync.audience)
        self.column = next(iter(sync.identifiers.values()))
        self.project_id = destination.config.project_id
        self.record_key = f"{destination.memory_scope()}/list_attributes/{self.spec.list_attribute}"
        self.list_id: int | None = None
        self.members: dict[str, None] = {}
        self.what = f"sync {sync.name!r}: list attribute {self.spec.list_attribute!r}"

    async def prepare(self) -> None:
        """Find (or create) the list attribute; load what it holds."""
        record = self._record()
        remembered = record.get("id")
        obj = await rest.find(
            self.client,
            index="/list_attributes",
            item=f"/list_attributes/{remembered}" if isinstance(remembered, int) else None,
            project_id=self.project_id,
            field="name",
            value=self.spec.list_attribute,
            what=self.what,
        )
        created = obj is None
        if obj is None:
            body = payload.list_attribute_body(self.spec, self.project_id, None)
            obj = await rest.create(self.client, "/list_attributes", body, what=self.what)
        elif obj.get("archived"):
            raise TerminalError(
                f"{self.what} is archived in Optimizely project {self.project_id} (id {obj['id']})",
                hint="unarchive it in Optimizely, or choose another audience.list_attribute (names stay taken when archived)",
            )
        self.list_id = int(obj["id"])
        if isinstance(record.get("members"), list):
            self.members = dict.fromkeys(str(m) for m in record["members"])
        elif self.sync.effective_mode in ("add", "mirror"):
            self.members = dict.fromkeys(str(v) for (v,) in self.state.snapshot([self.column]) if v is not None)
        elif not created:
            raise TerminalError(
                f"{self.what}: this remove sync would upload the whole list, but the state store has no "
                "record of its members",
                hint="run the add or mirror sync that fills this list first (it records the members)",
            )
        if remembered != self.list_id:
            self._save(members=record.get("members"))

    async def write(self, rows: Sequence[DeltaRow]) -> ChunkResult:
        result = ChunkResult()
        changes: list[tuple[str, str]] = []
        seqs: list[int] = []
        for row in rows:
            value, problem = payload.list_member(
                row.values.get(self.column), column=self.column, joining=row.action == "join", allow_pii=self.spec.allow_pii
            )
            if value is None:
                result.rejected[row.seq] = problem or "invalid list value"
                continue
            changes.append((row.action, value))
            seqs.append(row.seq)
        if not seqs:
            return result
        members = payload.apply_membership(self.members, changes)
        body = payload.list_attribute_body(self.spec, self.project_id, members)
        call = Call("PATCH", f"/list_attributes/{self.list_id}", dumps(body), tuple(seqs), rest.ENDPOINT)
        try:
            response = await self.client.send(call)
        except TransientError as exc:
            result.failed.update({seq: exc.message for seq in seqs})
            return result
        if not response.is_success:
            return result.reject(seqs, f"uploading the list failed: {rest.error_text(response)}", response)
        self.members = members
        self._save(members=list(members))
        result.accepted.extend(seqs)
        return result

    def _record(self) -> dict[str, Any]:
        raw = self.state.get(self.record_key)
        if raw is None:
            return {}
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return {}
        return record if isinstance(record, dict) else {}

    def _save(self, *, members: list[str] | None) -> None:
        record: dict[str, Any] = {"id": self.list_id}
        if members is not None:
            record["members"] = members
        self.state.put(self.record_key, orjson.dumps(record).decode())
