"""The Braze writer: columnar request bodies, local validation, and per-row outcomes.

How Braze answers, and what each answer means per row:

=====================================  ==========================================================
/users/track 201                       accepted, except the objects named in ``errors[].index``
/users/track 400 (all invalid)         every object rejected (its ``errors`` entry, else the message)
/users/delete 201                      accepted (Braze queues deletes of unknown ids too)
subscription 201 / 400                 all-or-nothing: a refused batch is halved and resent until
                                       the refused ids stand alone (at most six rounds for 50 ids)
catalog items 202 / 400 / 404          all-or-nothing: items named in ``errors[].parameter_values``
                                       are rejected (PATCH ``item-not-found``: skipped, as update
                                       never creates), the others resent once; errors naming no
                                       item reject the batch; ``catalog-not-found`` stops the run
=====================================  ==========================================================
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from reverse_etl.config.syncs import SyncConfig
from reverse_etl.delivery.client import Call, DeliveryClient
from reverse_etl.delivery.transport import Answer
from reverse_etl.destinations.base import BatchWriter, ChunkResult, DeltaChunk, DeltaRow, unreadable_success
from reverse_etl.destinations.braze import payload, validate
from reverse_etl.destinations.braze.config import MAX_IDS, BrazeAudience, BrazeEvent
from reverse_etl.destinations.braze.destination import BrazeDestination
from reverse_etl.destinations.checks import RowChecks
from reverse_etl.destinations.chunk import ACTION, SEQ
from reverse_etl.destinations.columnar import JsonEncoder, Obj, join_batches, take_text
from reverse_etl.errors import TerminalError, TransientError

NOT_APPLIED = "not applied: Braze refused the resent batch because of other rows; retried next run"
CATALOG_METHODS = {"upsert": "PUT", "insert": "POST", "update": "PATCH", "remove": "DELETE"}


@dataclasses.dataclass(frozen=True)
class BrazeCall(Call):
    """A call that keeps what is needed to resend part of it (all-or-nothing endpoints)."""

    kind: str = "track"  # track | delete | subscription | catalog
    items: tuple[str, ...] = ()  # subscription: ids; catalog: item JSON texts
    ids: tuple[str, ...] = ()  # catalog: item ids, parallel to seqs
    state: str = ""  # subscription: subscribed | unsubscribed
    resent: bool = False


def _json(response: Answer) -> dict[str, Any]:
    try:
        body = orjson.loads(response.content) if response.content else {}
    except orjson.JSONDecodeError:
        return {}
    return body if isinstance(body, dict) else {}


def _message(response: Answer, body: dict[str, Any]) -> str:
    return str(body.get("message") or response.text[:200].strip() or f"HTTP {response.status_code}")


def _indexed_errors(body: dict[str, Any]) -> dict[int, str]:
    out: dict[int, str] = {}
    for err in body.get("errors") or []:
        if isinstance(err, dict) and isinstance(err.get("index"), int):
            out[err["index"]] = str(err.get("type") or err.get("message") or "rejected")
    return out


class BrazeWriter(BatchWriter):
    """Writes one sync to Braze; see the module docstring for how answers map to rows."""

    COLUMNAR = True
    destination: BrazeDestination

    def __init__(self, destination: BrazeDestination, sync: SyncConfig, client: DeliveryClient) -> None:
        super().__init__(destination, sync, client)
        self.encoder = JsonEncoder()
        self.audience = BrazeAudience.model_validate(sync.audience) if sync.type == "audience" else None
        self.event = BrazeEvent.model_validate(sync.event) if sync.type == "events" else None
        self.id_name, self.id_column = next(iter(sync.identifiers.items()))
        self.group = self.audience.subscription_group_id if self.audience else None

    async def finish(self) -> None:
        self.encoder.close()

    # --- building ----------------------------------------------------------------------
    def build(self, rows: Sequence[DeltaRow]) -> tuple[list[Call], dict[int, str]]:
        return self.build_chunk(DeltaChunk.from_rows(rows))

    def build_chunk(self, chunk: DeltaChunk) -> tuple[list[Call], dict[int, str]]:
        table = chunk.table
        checks = RowChecks(table)
        self._validate(checks)
        seqs: list[int] = table.column(SEQ).to_pylist()
        rejected = {seqs[i]: reason for i, reason in checks.reasons.items()}
        if rejected:
            keep = [i for i in range(len(seqs)) if i not in checks.reasons]
            table = table.take(pa.array(keep, pa.int64()))
            seqs = [seqs[i] for i in keep]
        if self.sync.catalog is not None:
            return self._catalog_calls(table, seqs), rejected
        if self.group is not None:
            return self._subscription_calls(table, seqs), rejected
        calls: list[Call] = []
        if self.sync.on_remove == "delete" and self.sync.effective_mode == "mirror":
            removed = pc.equal(table.column(ACTION), "remove")
            if pc.any(removed).as_py():
                calls += self._delete_calls(table.filter(removed))
                table = table.filter(pc.invert(removed))
                seqs = table.column(SEQ).to_pylist()
        calls += self._track_calls(table, seqs, rejected)
        return calls, rejected

    def _validate(self, checks: RowChecks) -> None:
        sync = self.sync
        if sync.catalog is not None:
            validate.catalog_items(checks, sync.key_columns[0], sync.fields)
        elif self.group is not None:
            validate.subscription_ids(checks, self.id_name, self.id_column)
        elif self.event is not None:
            validate.identifier(checks, self.id_name, self.id_column)
            validate.event(checks, self.event.name_column, self.event.time, sync.fields)
        else:
            validate.identifier(checks, self.id_name, self.id_column)
            validate.attributes(checks, sync.fields)

    def _object(self) -> Obj:
        if self.event is not None:
            return payload.event_object(self.sync, self.event)
        return payload.attribute_object(self.sync, self.audience)

    def _track_calls(self, table: pa.Table, seqs: list[int], rejected: dict[int, str]) -> list[Call]:
        array = "events" if self.event is not None else "attributes"
        objects = self.encoder.encode(table, self._object())
        batches, too_big = join_batches(
            objects, self.destination.track_batch_size, prefix=b'{"' + array.encode() + b'":[', suffix=b"]}",
            max_bytes=payload.MAX_BODY_BYTES,
        )
        for index in too_big:
            rejected[seqs[index]] = f"the object is over Braze's {payload.MAX_BODY_BYTES // 2**20} MB request limit"
        return [
            BrazeCall("POST", "/users/track", b.body, tuple(seqs[b.start : b.end]), "users/track") for b in batches
        ]

    def _delete_calls(self, table: pa.Table) -> list[Call]:
        ids = [str(v) for v in take_text(table, self.id_column, range(table.num_rows))]
        seqs = table.column(SEQ).to_pylist()
        return [
            BrazeCall("POST", "/users/delete", payload.delete_body(ids[i : i + MAX_IDS]), tuple(seqs[i : i + MAX_IDS]),
                      "users/delete", kind="delete")
            for i in range(0, len(ids), MAX_IDS)
        ]

    def _subscription_calls(self, table: pa.Table, seqs: list[int]) -> list[Call]:
        assert self.group is not None
        ids = take_text(table, self.id_column, range(table.num_rows))
        actions = table.column(ACTION).to_pylist()
        calls: list[Call] = []
        for action, state in (("join", "subscribed"), ("leave", "unsubscribed")):
            picked = [(seq, id_) for seq, id_, a in zip(seqs, ids, actions, strict=True) if a == action]
            for batch in payload.chunks(picked, MAX_IDS):
                members = tuple(str(id_) for _, id_ in batch)
                calls.append(BrazeCall(
                    "POST", "/v2/subscription/status/set", payload.subscription_body(self.group, state, self.id_name, members),
                    tuple(seq for seq, _ in batch), "subscription", kind="subscription", items=members, state=state,
                ))
        return calls

    def _catalog_calls(self, table: pa.Table, seqs: list[int]) -> list[Call]:
        path = f"/catalogs/{self.sync.catalog}/items"
        actions = table.column(ACTION)
        calls: list[Call] = []
        for action, method in CATALOG_METHODS.items():
            mask = pc.equal(actions, action)
            if not pc.any(mask).as_py():
                continue
            part = table.filter(mask)
            part_seqs = part.column(SEQ).to_pylist()
            texts = self.encoder.encode(part, payload.catalog_item(self.sync, with_fields=method != "DELETE")).to_pylist()
            ids = take_text(part, self.sync.key_columns[0], range(part.num_rows))
            for i in range(0, len(texts), MAX_IDS):
                items = tuple(texts[i : i + MAX_IDS])
                calls.append(BrazeCall(
                    method, path, payload.items_body(items), tuple(part_seqs[i : i + MAX_IDS]), "catalogs", kind="catalog",
                    items=items, ids=tuple(str(x) for x in ids[i : i + MAX_IDS]),
                ))
        return calls

    # --- answers -----------------------------------------------------------------------
    def outcome(self, call: Call, response: Answer) -> ChunkResult:
        kind = call.kind if isinstance(call, BrazeCall) else "track"
        status = response.status_code
        if status < 400 and (garbled := unreadable_success(response)):
            return ChunkResult(failed=dict.fromkeys(call.seqs, garbled))
        body = _json(response)
        result = ChunkResult()
        if kind == "catalog":
            assert isinstance(call, BrazeCall)
            return self._catalog_outcome(call, response, body)
        if status < 400:
            indexed = _indexed_errors(body) if kind == "track" else {}
            for i, seq in enumerate(call.seqs):
                if i in indexed:
                    result.rejected[seq] = indexed[i]
                else:
                    result.accepted.append(seq)
            return result
        if kind == "subscription" and len(call.seqs) > 1:
            return result  # all-or-nothing: send_call halves the batch to find the refused ids
        reason = _message(response, body)
        indexed = _indexed_errors(body)
        for i, seq in enumerate(call.seqs):
            result.rejected[seq] = f"{indexed.get(i, reason)} (HTTP {status})"
        return result

    def _catalog_outcome(self, call: BrazeCall, response: Answer, body: dict[str, Any]) -> ChunkResult:
        result = ChunkResult()
        status = response.status_code
        if status < 400:
            result.accepted.extend(call.seqs)
            return result
        by_id: dict[str, str] = {}
        general: list[str] = []
        for err in body.get("errors") or []:
            if not isinstance(err, dict):
                continue
            error_id, message = str(err.get("id") or "error"), str(err.get("message") or "")
            if error_id == "catalog-not-found":
                raise TerminalError(
                    f"Braze has no catalog {self.sync.catalog!r} (sync {self.sync.name!r}); nothing was written to it",
                    status_code=status, hint="create the catalog and its fields in Braze first, or fix `catalog:`",
                )
            values = err.get("parameter_values") or []
            if err.get("parameters") == ["id"] and values:
                for value in values:
                    by_id[str(value)] = f"{error_id}: {message}"
            else:
                general.append(f"{error_id}: {message}" + (f" {values}" if values else ""))
        if general or not by_id:
            reason = "; ".join(general) or _message(response, body)
            result.rejected.update({seq: f"{reason} (HTTP {status})" for seq in call.seqs})
            return result
        for seq, item_id in zip(call.seqs, call.ids, strict=True):
            problem = by_id.get(item_id)
            if problem is None:
                continue  # not applied (all-or-nothing): send_call resends it
            if call.method == "PATCH" and problem.startswith("item-not-found"):
                result.accepted.append(seq)  # update never creates: an absent item is skipped, like users
            else:
                result.rejected[seq] = f"{problem} (HTTP {status})"
        return result

    async def send_call(self, call: Call) -> ChunkResult:
        result = await super().send_call(call)
        if not isinstance(call, BrazeCall) or call.kind not in ("subscription", "catalog"):
            return result
        settled = set(result.accepted) | result.rejected.keys()
        unsettled = [i for i, seq in enumerate(call.seqs) if seq not in settled]
        if not unsettled:
            return result
        if call.kind == "subscription":
            half = len(unsettled) // 2
            parts = [unsettled[:half], unsettled[half:]]
        elif call.resent:
            result.failed.update({call.seqs[i]: NOT_APPLIED for i in unsettled})
            return result
        else:
            parts = [unsettled]
        for part in parts:
            retry = self._subset(call, part)
            try:
                result.merge(await self.send_call(retry))
            except TransientError as exc:
                result.failed.update({seq: exc.message for seq in retry.seqs})
        return result

    def _subset(self, call: BrazeCall, indexes: Sequence[int]) -> BrazeCall:
        items = tuple(call.items[i] for i in indexes)
        if call.kind == "subscription":
            assert self.group is not None
            body = payload.subscription_body(self.group, call.state, self.id_name, items)
        else:
            body = payload.items_body(items)
        return dataclasses.replace(
            call, body=body, seqs=tuple(call.seqs[i] for i in indexes), items=items,
            ids=tuple(call.ids[i] for i in indexes) if call.ids else (), resent=True,
        )
