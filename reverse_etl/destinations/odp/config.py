"""ODP profile keys and the ODP-specific parts of a sync (``audience:``, ``event:``)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from reverse_etl.config.profiles import Strict
from reverse_etl.destinations.base import DestinationConfig

REGIONS: dict[str, str] = {
    "us": "https://api.zaius.com/v3",
    "eu": "https://api.eu1.odp.optimizely.com/v3",
    "au": "https://api.au1.odp.optimizely.com/v3",
}

# The identifier fields every ODP account has; accounts may define more (``identifier_fields:``).
IDENTIFIERS: tuple[str, ...] = ("customer_id", "email", "fs_user_id", "vuid")

# Rate-limit buckets, one per API area; ODP documents 10 requests/s for profiles and lists and no
# limit for events and objects (those share the destination's ``requests_per_second``).
ENDPOINTS: tuple[str, ...] = ("profiles", "events", "objects", "lists")
DEFAULT_RATE_LIMITS: dict[str, float] = {"profiles": 10.0, "lists": 10.0}

FIELD_NAME = re.compile(r"[a-z0-9_]+")  # ODP field, object and identifier names are lower snake case
_NON_ALNUM = re.compile(r"[^a-z0-9]")


def list_id_for(name: str) -> str:
    """The list id ODP derives from a list name: lower-cased, every non-[a-z0-9] character -> ``_``."""
    return _NON_ALNUM.sub("_", name.lower())


class OdpConfig(DestinationConfig):
    """``{type: odp, region: us|eu|au, api_key: ...}``; ``base_url`` (with ``/v3``) overrides ``region``."""

    type: Literal["odp"] = "odp"
    region: Literal["us", "eu", "au"] | None = None
    api_key: SecretStr | None = None
    rate_limits: dict[str, float] = Field(
        default_factory=dict, description="requests/s per endpoint (profiles, events, objects, lists)"
    )
    identifier_fields: list[str] = Field(
        default_factory=list, description="identifier fields your ODP account defines beyond the standard ones"
    )

    @field_validator("region", mode="before")
    @classmethod
    def _lower_region(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("rate_limits")
    @classmethod
    def _rates(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(ENDPOINTS))
        if unknown:
            raise ValueError(f"unknown endpoint(s) {unknown}; rate_limits takes {', '.join(ENDPOINTS)}")
        bad = sorted(k for k, v in value.items() if v <= 0)
        if bad:
            raise ValueError(f"rate_limits must be positive requests per second; check {bad}")
        return value

    @field_validator("identifier_fields")
    @classmethod
    def _identifier_names(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if not FIELD_NAME.fullmatch(v)]
        if bad:
            raise ValueError(f"ODP identifier fields are lower snake case ([a-z0-9_]+), got {bad}")
        return value

    @model_validator(mode="after")
    def _where(self) -> OdpConfig:
        if not self.sandbox:
            if not (self.region or self.base_url):
                raise ValueError("an ODP destination needs `region:` (us, eu or au) or `base_url:`")
            if self.api_key is None:
                raise ValueError("an ODP destination needs `api_key:` (use {{ env_var('ODP_API_KEY') }})")
        return self

    @property
    def identifiers(self) -> tuple[str, ...]:
        """Every identifier field a sync may map to: the standard ones and the account's own."""
        return tuple(sorted({*IDENTIFIERS, *self.identifier_fields}))

    def endpoint_rates(self) -> dict[str, float]:
        """Requests/s per endpoint: ODP's documented limits, then the profile's overrides.

        A destination-wide ``requests_per_second`` caps every endpoint, so lowering it slows
        profiles and lists too rather than only events and objects.
        """
        rates = {**DEFAULT_RATE_LIMITS, **self.rate_limits}
        if self.requests_per_second is not None:
            rates = {k: min(v, self.requests_per_second) for k, v in rates.items()}
        return rates


def _literal_or_column(value: str | dict[str, str] | None, what: str) -> None:
    if isinstance(value, dict) and (set(value) != {"column"} or not value["column"]):
        raise ValueError(f"event {what} is a literal or {{column: <model column>}}")
    if isinstance(value, str) and not value.strip():
        raise ValueError(f"event {what} must not be empty")


class OdpAudience(Strict):
    """``audience:`` of an ODP audience sync: ``{list: <list name>}``; the list is created if missing."""

    list_name: str = Field(alias="list", min_length=1)

    @field_validator("list_name")
    @classmethod
    def _has_id(cls, value: str) -> str:
        if not value.strip() or not list_id_for(value).strip("_"):
            raise ValueError(f"list name {value!r} gives no usable list id; use letters or digits")
        return value

    @property
    def list_id(self) -> str:
        return list_id_for(self.list_name)


class OdpEvent(Strict):
    """``event:`` of an ODP events sync: ``{type, action?, time: <column>}``.

    ``type`` and ``action`` are each a literal or ``{column: <model column>}``.
    """

    type: str | dict[str, str]
    action: str | dict[str, str] | None = None
    time: str = Field(min_length=1)

    @model_validator(mode="after")
    def _shape(self) -> OdpEvent:
        _literal_or_column(self.type, "type")
        _literal_or_column(self.action, "action")
        return self

    @property
    def type_column(self) -> str | None:
        return self.type["column"] if isinstance(self.type, dict) else None

    @property
    def action_column(self) -> str | None:
        return self.action["column"] if isinstance(self.action, dict) else None

    @property
    def columns(self) -> list[str]:
        """Model columns the event reads besides identifiers and fields."""
        return [c for c in (self.time, self.type_column, self.action_column) if c]
