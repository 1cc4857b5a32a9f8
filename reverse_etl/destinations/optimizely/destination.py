"""The Optimizely Experimentation destination: checks syncs and picks the writer for each type."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from reverse_etl.config.syncs import SyncConfig
from reverse_etl.delivery.client import DeliveryClient
from reverse_etl.destinations.base import Destination, Writer
from reverse_etl.destinations.optimizely.config import (
    OBJECTS,
    REST_URL,
    OptimizelyAudience,
    OptimizelyConfig,
    OptimizelyEvent,
)
from reverse_etl.destinations.optimizely.definitions import DefinitionWriter
from reverse_etl.destinations.optimizely.events import EventWriter
from reverse_etl.destinations.optimizely.lists import ListAttributeWriter

_PII_NAME = re.compile(r"e[-_ ]?mail", re.IGNORECASE)


def _explain(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors(include_url=False)
    )


class OptimizelyDestination(Destination):
    """``type: optimizely``: list attributes, definitions (REST v2) and conversions (Event API)."""

    type_name = "optimizely"
    config_model = OptimizelyConfig
    default_batch_size = 500  # events per Event API request (bodies are also kept under 3.5 MB)
    max_batch_size = 10_000
    default_requests_per_second = 2.0  # REST: integrations cite 2/s; 429s are backed off
    supported = {
        "records": ("upsert", "update", "insert", "mirror"),
        "audience": ("add", "remove", "mirror"),
        "events": ("insert",),
    }
    config: OptimizelyConfig

    def __init__(self, name: str, config: OptimizelyConfig) -> None:
        super().__init__(name, config)
        self._sandbox_events_url: str | None = None

    # --- checks ------------------------------------------------------------------------
    def check_sync(self, sync: SyncConfig) -> list[str]:
        problems = super().check_sync(sync)
        if sync.catalog:
            problems.append("Optimizely has no catalogs; remove `catalog:`")
        if sync.type != "records" and sync.object:
            problems.append("`object:` is for records syncs (attributes, custom_events, audiences)")
        if sync.type == "audience":
            problems.extend(self._check_audience(sync))
        elif sync.type == "records":
            problems.extend(self._check_records(sync))
        elif sync.type == "events":
            problems.extend(self._check_events(sync))
        return problems

    def _check_audience(self, sync: SyncConfig) -> list[str]:
        problems: list[str] = []
        try:
            spec: OptimizelyAudience | None = OptimizelyAudience.model_validate(sync.audience)
        except ValidationError as exc:
            spec = None
            problems.append(f"invalid `audience:` for Optimizely: {_explain(exc)}")
        if len(sync.identifiers) != 1:
            problems.append("an Optimizely list holds one value per member: give exactly one identifier, e.g. {user_id: user_id}")
        else:
            name, column = next(iter(sync.identifiers.items()))
            if sync.key_columns != [column]:
                problems.append(
                    f"the list's identifier column {column!r} must be the primary_key: list members are unique values"
                )
            names = [name, column] + ([spec.key_field] if spec else [])
            if spec is not None and not spec.allow_pii and any(_PII_NAME.search(n) for n in names):
                problems.append(
                    "Optimizely's terms forbid PII such as e-mail addresses in list attributes; map a non-PII id "
                    "(e.g. {user_id: user_id}), or set audience.allow_pii: true if the values are not PII"
                )
        if sync.fields:
            problems.append("an audience sync uploads membership only; move `fields:` to a records sync")
        return problems

    def _check_records(self, sync: SyncConfig) -> list[str]:
        kind = OBJECTS.get(sync.object or "")
        if kind is None:
            return [f"a records sync to Optimizely needs `object:` one of {', '.join(OBJECTS)} (got {sync.object!r})"]
        problems: list[str] = []
        if set(sync.identifiers) != {kind.match}:
            problems.append(f"Optimizely {kind.name} are found by {kind.match}: use identifiers: {{{kind.match}: <column>}}")
        unknown = sorted(set(sync.fields) - kind.fields)
        if unknown:
            problems.append(f"unknown {kind.name} field(s) {unknown}; use {', '.join(sorted(kind.fields))}")
        missing = sorted(kind.required - set(sync.fields))
        if missing and sync.effective_mode != "update":
            problems.append(f"creating {kind.name} needs fields {missing} (e.g. conditions: <column>)")
        return problems

    def _check_events(self, sync: SyncConfig) -> list[str]:
        problems: list[str] = []
        try:
            OptimizelyEvent.model_validate(sync.event)
        except ValidationError as exc:
            problems.append(f"invalid `event:` for Optimizely: {_explain(exc)}")
        if set(sync.identifiers) != {"visitor_id"}:
            problems.append("Optimizely events need exactly identifiers: {visitor_id: <column>}")
        return problems

    def extra_columns(self, sync: SyncConfig) -> list[str]:
        if sync.type != "events" or not sync.event:
            return []
        try:
            return OptimizelyEvent.model_validate(sync.event).columns
        except ValidationError:
            return []

    # --- where and how -----------------------------------------------------------------
    def identity(self, sync: SyncConfig) -> dict[str, Any]:
        return {**super().identity(sync), "project_id": self.config.project_id, "account_id": self.config.account_id}

    def sandbox_options(self, syncs: Sequence[SyncConfig] = ()) -> dict[str, Any]:
        return {"projects": {self.config.project_id: "web"}, "account_id": self.config.account_id}

    def use_sandbox(self, root_url: str) -> str:
        self._sandbox_events_url = root_url + "/v1/events"
        return root_url + "/v2"

    def base_url(self) -> str:
        return self.config.base_url or REST_URL

    def events_url(self) -> str:
        """The Event API endpoint: ``events_url``, else the sandbox's, else the region's host."""
        return self.config.events_url or self._sandbox_events_url or self.config.event_api_url

    def auth_headers(self) -> dict[str, str]:
        token = self.config.token.get_secret_value() if self.config.token else "sandbox-key"
        return {"Authorization": f"Bearer {token}"}

    def memory_scope(self) -> str:
        """Prefix of what writers keep in the state store: the API host and the project, so
        another project (or the sandbox) never reads this one's list contents or ids."""
        host = "sandbox" if self.config.sandbox and not self.config.base_url else urlsplit(self.base_url()).hostname
        return f"optimizely/{host}/{self.config.project_id}"

    def writer(self, sync: SyncConfig, client: DeliveryClient) -> Writer:
        if sync.type == "audience":
            return ListAttributeWriter(self, sync, client)
        if sync.type == "events":
            return EventWriter(self, sync, client)
        return DefinitionWriter(self, sync, client)
