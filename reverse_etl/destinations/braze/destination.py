"""The Braze destination: instances, limits, and which syncs it can run (its writer: writer.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import ValidationError

from reverse_etl.config.syncs import SyncConfig
from reverse_etl.delivery.client import DeliveryClient, DeliverySettings
from reverse_etl.destinations.base import Destination, Writer
from reverse_etl.destinations.braze.config import (
    CATALOG_NAME,
    IDENTIFIERS,
    INSTANCES,
    MAX_PER_ARRAY,
    RESERVED_FIELDS,
    BrazeAudience,
    BrazeConfig,
    BrazeEvent,
    key_problem,
)

# Documented default rates (requests/s), 2% under the limit so arrival jitter never trips a window.
ENDPOINT_RATES: dict[str, float] = {
    "users/track": 3000 / 3 * 0.98,  # 3,000 requests / 3 s
    "users/delete": 20_000 / 60 * 0.98,  # 20,000 / min, shared with /users/alias/new and /users/identify
    "subscription": 250_000 / 3600 * 0.98,  # the default 250,000 / h
    "catalogs": 16_000 / 60 * 0.98,  # 16,000 / min across the asynchronous catalog item endpoints
}


def _explain(exc: ValidationError) -> str:
    return "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors(include_url=False))


class BrazeDestination(Destination):
    """``type: braze``: /users/track, /users/delete, subscription groups and catalog items."""

    type_name = "braze"
    config_model = BrazeConfig
    default_batch_size = MAX_PER_ARRAY
    max_batch_size = MAX_PER_ARRAY
    default_requests_per_second = ENDPOINT_RATES["users/track"]
    supported: ClassVar[dict[str, tuple[str, ...]]] = {
        "records": ("upsert", "update", "insert", "mirror"),
        "audience": ("add", "remove", "mirror"),
        "events": ("insert",),
    }
    config: BrazeConfig

    @property
    def track_batch_size(self) -> int:
        """Objects per /users/track request: batch_size, capped by max_objects_combined."""
        return min(self.batch_size, self.config.max_objects_combined or MAX_PER_ARRAY)

    # --- checks ------------------------------------------------------------------------
    def check_sync(self, sync: SyncConfig) -> list[str]:
        problems = super().check_sync(sync)
        if sync.object:
            problems.append("Braze has no `object:`; write catalog items with `catalog: <name>`")
        if sync.catalog is not None:
            return problems + self._check_catalog(sync)
        unknown = [k for k in sync.identifiers if k not in IDENTIFIERS]
        if unknown:
            problems.append(f"unknown Braze identifier(s) {unknown}; use one of {', '.join(IDENTIFIERS)}")
        if len(sync.identifiers) > 1:
            problems.append("a Braze object takes exactly one identifier (e.g. {external_id: user_id})")
        if sync.on_remove == "delete" and "external_id" not in sync.identifiers:
            problems.append("on_remove: delete needs the external_id identifier")
        if sync.type == "audience":
            problems += self._check_audience(sync)
        elif sync.type == "events":
            problems += self._check_event(sync)
        else:
            clash = sorted(RESERVED_FIELDS & set(sync.fields))
            if clash:
                problems.append(f"fields {clash} are Braze's own keys; map identifiers under `identifiers:`")
            problems += [p for key in sync.fields if (p := key_problem(key, "attribute"))]
        return problems

    def _check_audience(self, sync: SyncConfig) -> list[str]:
        try:
            spec = BrazeAudience.model_validate(sync.audience)
        except ValidationError as exc:
            return [f"invalid `audience:` for Braze: {_explain(exc)}"]
        problems = []
        if sync.fields:
            problems.append("an audience sync sends membership only; move `fields:` to a records sync")
        if spec.subscription_group_id is not None and not set(sync.identifiers) <= {"external_id", "email", "phone"}:
            problems.append("a subscription group is addressed by external_id, email or phone")
        for key in (spec.name, spec.attribute if spec.membership == "array" else None):
            if key is not None and (p := key_problem(key, "attribute")):
                problems.append(p)
        return problems

    def _check_event(self, sync: SyncConfig) -> list[str]:
        try:
            BrazeEvent.model_validate(sync.event)
        except ValidationError as exc:
            return [f"invalid `event:` for Braze: {_explain(exc)}"]
        return [p for key in sync.fields if (p := key_problem(key, "event property"))]

    def _check_catalog(self, sync: SyncConfig) -> list[str]:
        problems = []
        name = sync.catalog or ""
        if not CATALOG_NAME.fullmatch(name):
            problems.append(f"catalog name {name!r} must be 1 to 250 letters, digits, '-' or '_'")
        if sync.type != "records":
            problems.append("`catalog:` is for type: records (each row is one catalog item)")
        if len(sync.key_columns) != 1:
            problems.append("a catalog item's id comes from the primary key: give one primary key column")
        elif sync.identifiers != {"id": sync.key_columns[0]}:
            problems.append(
                f"a catalog sync is identified by its item id: write `identifiers: {{id: {sync.key_columns[0]}}}` "
                "(the primary key column)"
            )
        bad = [k for k in sync.fields if k == "id" or not CATALOG_NAME.fullmatch(k)]
        if bad:
            problems.append(f"catalog field names {bad} must be letters, digits, '-' or '_' (and not `id`)")
        return problems

    def extra_columns(self, sync: SyncConfig) -> list[str]:
        if sync.type != "events" or not sync.event:
            return []
        event = BrazeEvent.model_validate(sync.event)
        return [c for c in (event.time, event.name_column) if c]

    # --- connection --------------------------------------------------------------------
    def base_url(self) -> str:
        if self.config.base_url:
            return self.config.base_url
        if self.config.instance:
            return INSTANCES[self.config.instance.upper()]
        raise ValueError("Braze destination has neither base_url nor instance")

    def auth_headers(self) -> dict[str, str]:
        key = self.config.api_key.get_secret_value() if self.config.api_key else "sandbox-key"
        return {"Authorization": f"Bearer {key}"}

    def sandbox_options(self, syncs: Sequence[SyncConfig] = ()) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if self.config.api_key is not None:
            options["api_key"] = self.config.api_key.get_secret_value()
        if self.config.max_objects_combined is not None:  # the sandbox holds the same contract
            options["max_objects_combined"] = self.config.max_objects_combined
        # Real Braze needs a catalog created (with its fields) before items are written; the
        # emulator starts with the catalogs this destination's syncs write.
        catalogs: dict[str, set[str]] = {}
        for sync in syncs if self.config.sandbox else ():
            if sync.catalog is not None and not self.check_sync(sync):
                catalogs.setdefault(sync.catalog, set()).update(sync.fields)
        if catalogs:
            options["catalogs"] = {name: sorted(fields) for name, fields in sorted(catalogs.items())}
        return options

    def delivery_settings(self, base_url: str | None = None) -> DeliverySettings:
        settings = super().delivery_settings(base_url)
        # requests_per_second is the /users/track rate; no other endpoint may go faster than it.
        track = self.config.requests_per_second or ENDPOINT_RATES["users/track"]
        rates = {name: min(rate, track) for name, rate in ENDPOINT_RATES.items()}
        rates["users/track"] = track
        return dataclasses.replace(settings, requests_per_second=track, endpoint_rates=rates)

    def writer(self, sync: SyncConfig, client: DeliveryClient) -> Writer:
        from reverse_etl.destinations.braze.writer import BrazeWriter  # it imports this module

        return BrazeWriter(self, sync, client)

    def warm_up(self) -> None:
        from reverse_etl.destinations import columnar
        from reverse_etl.destinations.braze import writer  # noqa: F401 - imported for its cost

        columnar.warm_up()
