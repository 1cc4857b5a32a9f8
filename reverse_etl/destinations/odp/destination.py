"""The ODP destination and its writer.

How a sync maps to ODP (shared/destinations/odp.md):

==========================  =====================================================================
records                     POST /profiles ``{"attributes": {identifiers..., fields...}}`` (upsert)
records, ``object: x``      POST /objects/x flat records keyed by the object's primary key
records mirror, removed     the same call with the mapped fields null (``on_remove: clear``)
audience                    the list is created if missing, then POST /lists/subscriptions
events                      POST /events with a stable ``data.idempotence_id`` per event row
==========================  =====================================================================

ODP validates a batch as a whole: one invalid item fails the request with 400 and
``detail.invalids`` naming every invalid item by index, and nothing is applied. The writer
rejects the named rows and resends the rest of that batch, so one bad row does not hold back
the 99 good ones next to it. A resend refused for other items is handled the same way, up to
:data:`MAX_RESENDS` times; every resend is smaller than the request before it, and rows still
unsettled after the last one fail (sent again next run).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from reverse_etl.config.syncs import SyncConfig
from reverse_etl.delivery.client import Call, DeliveryClient, DeliverySettings
from reverse_etl.delivery.transport import Answer
from reverse_etl.destinations.base import (
    BatchWriter,
    ChunkResult,
    DeltaRow,
    Destination,
    dumps,
    unreadable_success,
)
from reverse_etl.destinations.odp import payload
from reverse_etl.destinations.odp.config import (
    FIELD_NAME,
    REGIONS,
    OdpAudience,
    OdpConfig,
    OdpEvent,
)
from reverse_etl.errors import TerminalError, TransientError

NOT_APPLIED = "not applied: ODP refused the resent batch because of other invalid rows; retried next run"
MAX_RESENDS = 5  # at most this many resends of one batch's valid rest, each smaller than the request before


class OdpDestination(Destination):
    type_name = "odp"
    config_model = OdpConfig
    default_batch_size = 100  # what ODP's SDKs send; the API takes up to 500
    max_batch_size = 500
    default_requests_per_second = None  # events and objects: no documented limit
    supported = {
        "records": ("upsert", "mirror"),
        "audience": ("add", "remove", "mirror"),
        "events": ("insert",),
    }
    sandbox_path = "/v3"
    config: OdpConfig

    def check_sync(self, sync: SyncConfig) -> list[str]:
        problems = super().check_sync(sync)
        if sync.type == "records" and sync.effective_mode in ("update", "insert"):
            problems = [p for p in problems if f"mode {sync.mode!r}" not in p]
            problems.append(
                f"ODP's profile and object APIs only upsert (create or update), so mode {sync.mode!r} cannot be "
                "honoured; use mode: upsert (or mirror)"
            )
        if sync.on_remove == "delete":
            problems.append("ODP has no API to delete profiles or object records; use on_remove: clear")
        if sync.catalog:
            problems.append("ODP has no catalogs; to write an object use `object: <name>` (e.g. products)")
        problems += self._check_identifiers(sync)
        problems += self._check_fields(sync)
        problems += self._check_spec(sync)
        return problems

    def _check_identifiers(self, sync: SyncConfig) -> list[str]:
        if sync.object is not None:
            problems = []
            if sync.type != "records":
                problems.append("`object:` is only for type: records")
            if not FIELD_NAME.fullmatch(sync.object):
                problems.append(f"ODP object names are lower snake case ([a-z0-9_]+), got {sync.object!r}")
            if len(sync.identifiers) != 1:
                problems.append("an object sync takes one identifier: the object's primary key, e.g. {product_id: sku}")
            bad = [k for k in sync.identifiers if not FIELD_NAME.fullmatch(k)]
            if bad:
                problems.append(f"ODP field names are lower snake case ([a-z0-9_]+), got {bad}")
            return problems
        problems = []
        known = self.config.identifiers
        unknown = [k for k in sync.identifiers if k not in known]
        if unknown:
            problems.append(
                f"{unknown} are not ODP identifier fields; use {', '.join(known)} "
                "(or list your account's own under the destination's identifier_fields:)"
            )
        if sync.type == "audience" and len(sync.identifiers) != 1:
            problems.append("an ODP list subscription names exactly one identifier, e.g. {email: email}")
        return problems

    def _check_fields(self, sync: SyncConfig) -> list[str]:
        problems = []
        bad = [k for k in sync.fields if not FIELD_NAME.fullmatch(k)]
        if bad:
            problems.append(f"ODP field names are lower snake case ([a-z0-9_]+), got {bad}")
        both = sorted(set(sync.fields) & set(sync.identifiers))
        if both:
            problems.append(f"{both} are mapped both as identifiers and as fields; map each once")
        if sync.type == "events":
            reserved = [k for k in sync.fields if k in payload.RESERVED_EVENT_DATA]
            if reserved:
                problems.append(f"event fields {reserved} are set by retl (ts from event.time, idempotence_id from the key)")
        if sync.type == "audience" and sync.fields:
            problems.append("an audience sync sends list membership only; move `fields:` to a records sync")
        return problems

    def _check_spec(self, sync: SyncConfig) -> list[str]:
        try:
            if sync.type == "audience":
                OdpAudience.model_validate(sync.audience)
            elif sync.type == "events":
                OdpEvent.model_validate(sync.event)
        except ValueError as exc:
            what = "audience" if sync.type == "audience" else "event"
            hint = "{list: <list name>}" if sync.type == "audience" else "{type, action?, time: <column>}"
            return [f"invalid `{what}:` for ODP (expected {hint}): {exc}"]
        return []

    def extra_columns(self, sync: SyncConfig) -> list[str]:
        if sync.type != "events" or not sync.event:
            return []
        return OdpEvent.model_validate(sync.event).columns

    def base_url(self) -> str:
        if self.config.base_url:
            return self.config.base_url
        if self.config.region:
            return REGIONS[self.config.region]
        raise ValueError("ODP destination has neither base_url nor region")

    def auth_headers(self) -> dict[str, str]:
        key = self.config.api_key.get_secret_value() if self.config.api_key else "sandbox-key"
        return {"x-api-key": key}

    def sandbox_options(self, syncs: Sequence[SyncConfig] = ()) -> dict[str, Any]:
        # The emulator must know the key and identifier fields this profile uses, or it refuses them.
        options: dict[str, Any] = {}
        if self.config.api_key is not None:
            options["api_key"] = self.config.api_key.get_secret_value()
        if self.config.identifier_fields:
            options["identifier_fields"] = list(self.config.identifiers)
        return options

    def delivery_settings(self, base_url: str | None = None) -> DeliverySettings:
        return dataclasses.replace(super().delivery_settings(base_url), endpoint_rates=self.config.endpoint_rates())

    def writer(self, sync: SyncConfig, client: DeliveryClient) -> OdpWriter:
        return OdpWriter(self, sync, client)


@dataclasses.dataclass(frozen=True)
class OdpCall(Call):
    """A call that also keeps its items, so the valid ones can be resent without the invalid ones."""

    items: tuple[payload.Item, ...] = ()

    def subset(self, indexes: Sequence[int]) -> OdpCall:
        items = tuple(self.items[i] for i in indexes)
        seqs = tuple(self.seqs[i] for i in indexes)
        return dataclasses.replace(self, body=dumps(list(items)), seqs=seqs, items=items)


class OdpWriter(BatchWriter):
    """Writes one sync to ODP; see the module docstring for the mapping and the resend of valid rows."""

    destination: OdpDestination

    def __init__(self, destination: OdpDestination, sync: SyncConfig, client: DeliveryClient) -> None:
        super().__init__(destination, sync, client)
        self.audience = OdpAudience.model_validate(sync.audience) if sync.type == "audience" else None
        self.path, self.endpoint, self.make = self._target()

    def _target(self) -> tuple[str, str, Callable[[DeltaRow], payload.Built]]:
        sync = self.sync
        if self.audience is not None:
            audience = self.audience
            return "/lists/subscriptions", "lists", lambda row: payload.subscription(sync, audience, row)
        if sync.type == "events":
            event = OdpEvent.model_validate(sync.event)
            return "/events", "events", lambda row: payload.event_item(sync, event, row)
        if sync.object is not None:
            return f"/objects/{sync.object}", "objects", lambda row: payload.object_record(sync, row)
        return "/profiles", "profiles", lambda row: payload.profile_item(sync, row)

    async def prepare(self) -> None:
        """For an audience, create its list unless ODP already has it."""
        if self.audience is not None:
            await self._ensure_list(self.audience)

    async def _ensure_list(self, audience: OdpAudience) -> None:
        listed = await self.client.send(Call("GET", "/lists", endpoint="lists"))
        if listed.status_code >= 400:
            raise TerminalError(f"GET /lists answered {listed.status_code}: {_message(listed)}")
        body = _json(listed)
        lists = body.get("lists") if isinstance(body, dict) else None
        if any(isinstance(x, dict) and x.get("list_id") == audience.list_id for x in lists or []):
            return
        created = await self.client.send(Call("POST", "/lists", dumps({"name": audience.list_name}), endpoint="lists"))
        answer = _json(created)
        if created.status_code < 400:
            got = (answer.get("created") or {}).get("list_id") if isinstance(answer, dict) else None
            if got is not None and got != audience.list_id:
                raise TerminalError(
                    f"ODP created list {audience.list_name!r} as {got!r}, not {audience.list_id!r} as expected; "
                    "memberships were not sent",
                    hint="rename the list in `audience.list:` to letters, digits and underscores",
                )
            return
        # 400 "already exists": another run created it between our GET and POST; that is fine.
        detail = answer.get("detail") if isinstance(answer, dict) else None
        if created.status_code == 400 and isinstance(detail, dict) and detail.get("list_id") == audience.list_id:
            return
        raise TerminalError(f"creating ODP list {audience.list_name!r} failed with {created.status_code}: {_message(created)}")

    def build(self, rows: Sequence[DeltaRow]) -> tuple[list[Call], dict[int, str]]:
        rejected: dict[int, str] = {}
        built: list[tuple[int, payload.Item]] = []
        for row in rows:
            item, problem = self.make(row)
            if item is None:
                rejected[row.seq] = problem or "invalid row"
            else:
                built.append((row.seq, item))
        calls: list[Call] = []
        for batch in payload.chunks(built, self.destination.batch_size):
            items = tuple(item for _, item in batch)
            seqs = tuple(seq for seq, _ in batch)
            calls.append(OdpCall("POST", self.path, dumps(list(items)), seqs, self.endpoint, items=items))
        return calls, rejected

    def outcome(self, call: Call, response: Answer) -> ChunkResult:
        """All rows accepted on 2xx; on 400 naming invalid items, those are rejected and the rest
        left unsettled (nothing was applied) for :meth:`send_call` to resend; otherwise all rejected."""
        result = ChunkResult()
        status = response.status_code
        if status < 400:
            if garbled := unreadable_success(response):  # a proxy's page is no proof of delivery
                result.failed.update(dict.fromkeys(call.seqs, garbled))
            else:
                result.accepted.extend(call.seqs)
            return result
        invalid = payload.invalid_rows(_json(response), len(call.seqs)) if status == 400 else None
        if invalid is None:
            reason = f"{_message(response)} (HTTP {status})"
            result.rejected.update({seq: reason for seq in call.seqs})
            return result
        for index, reason in invalid.items():
            result.rejected[call.seqs[index]] = f"{reason} (HTTP {status})"
        return result

    async def send_call(self, call: Call) -> ChunkResult:
        """Send ``call``; while ODP refuses it for some items only, resend the rest (see the module docstring)."""
        result = await super().send_call(call)
        if not isinstance(call, OdpCall):
            return result
        sent, left = call, _unsettled(call, result)
        doubtful = bool(result.unsure)  # an earlier attempt of the batch may have applied all of it
        for _ in range(MAX_RESENDS):
            if left is None or len(left.seqs) == len(sent.seqs):  # all settled, or no progress
                break
            again = await self._resend(left, doubtful)
            result.merge(again)
            doubtful = doubtful or bool(again.unsure)
            sent, left = left, _unsettled(left, again)
        if left is not None:
            result.merge(ChunkResult(failed=dict.fromkeys(left.seqs, NOT_APPLIED)))
        return result

    async def _resend(self, call: OdpCall, doubtful: bool) -> ChunkResult:
        """One resend; a transient failure fails its rows only (earlier answers still stand).

        ``doubtful``: an earlier attempt of the batch may have been applied (its answer was lost),
        so a row this resend rejects may be held all the same.
        """
        try:
            result = await super().send_call(call)
        except TransientError as exc:
            return ChunkResult(failed=dict.fromkeys(call.seqs, exc.message))
        if doubtful:
            result.doubt()
        return result


def _unsettled(call: OdpCall, result: ChunkResult) -> OdpCall | None:
    """The part of ``call`` its answer ``result`` left neither accepted, rejected nor failed (the
    valid rest of a refused batch), or None when every row is settled."""
    settled = set(result.accepted) | result.rejected.keys() | result.failed.keys()
    left = [i for i, seq in enumerate(call.seqs) if seq not in settled]
    return call.subset(left) if left else None


def _json(response: Answer) -> Any:
    try:
        return orjson.loads(response.content) if response.content else None
    except orjson.JSONDecodeError:
        return None


def _message(response: Answer) -> str:
    body = _json(response)
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return response.text[:200].strip() or f"HTTP {response.status_code}"
