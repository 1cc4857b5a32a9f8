"""Optimizely profile keys and the Optimizely-specific parts of a sync (``audience:``, ``event:``, ``object:``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from reverse_etl.config.profiles import Strict
from reverse_etl.config.urls import check_url
from reverse_etl.destinations.base import DestinationConfig

REST_URL = "https://api.optimizely.com/v2"
EVENTS_URLS = {
    "us": "https://logx.optimizely.com/v1/events",
    "eu": "https://eu.logx.optimizely.com/v1/events",
}


class OptimizelyConfig(DestinationConfig):
    """``type: optimizely`` in a profile. ``base_url`` overrides the REST host (with ``/v2``),
    ``events_url`` the whole Event API URL (else ``region`` picks it)."""

    type: Literal["optimizely"] = "optimizely"
    token: SecretStr | None = None
    project_id: int = Field(ge=1)
    account_id: int = Field(ge=1)
    region: Literal["us", "eu"] = "us"
    events_url: str | None = None

    @field_validator("events_url")
    @classmethod
    def _events_url(cls, value: str | None) -> str | None:
        return None if value is None else check_url(value, "events_url")

    @model_validator(mode="after")
    def _token(self) -> OptimizelyConfig:
        if not self.sandbox and self.token is None:
            raise ValueError(
                "an Optimizely destination needs `token:`, a personal access token "
                "(use {{ env_var('OPTIMIZELY_TOKEN') }})"
            )
        return self

    @property
    def event_api_url(self) -> str:
        return self.events_url or EVENTS_URLS[self.region]


ListType = Literal["cookies", "query_parameters", "zip_codes", "js_variables"]


class OptimizelyAudience(Strict):
    """``audience:`` of an audience sync: the Web list attribute that holds the members."""

    list_attribute: str = Field(pattern=r"^[-_0-9A-Za-z]+$", max_length=255)
    key_field: str = Field(min_length=1)
    list_type: ListType = "cookies"
    description: str | None = None
    # Optimizely's terms forbid PII in lists; values that look like e-mail addresses are refused.
    allow_pii: bool = False


class OptimizelyEvent(Strict):
    """``event:`` of an events sync: the custom event's key and the columns of each conversion."""

    key: str = Field(min_length=1, max_length=64)
    time: str
    revenue: str | None = None
    # The revenue column's unit: integer cents (what the Event API takes), or dollars (any
    # currency's major unit) that are multiplied by 100 and rounded half-up to cents.
    revenue_unit: Literal["cents", "dollars"] = "cents"
    value: str | None = None
    entity_id: str | None = None
    create_if_missing: bool = False  # create the custom event (REST) when no event has the key

    @field_validator("entity_id", mode="before")
    @classmethod
    def _entity_id(cls, value: object) -> object:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _one_source(self) -> OptimizelyEvent:
        if self.entity_id is not None and self.create_if_missing:
            raise ValueError("give either entity_id or create_if_missing, not both")
        return self

    @property
    def columns(self) -> list[str]:
        return [c for c in (self.time, self.revenue, self.value) if c]


@dataclass(frozen=True)
class ObjectKind:
    """How one REST definition type is addressed: its match field and writable fields."""

    name: str
    match: str  # the identifier that finds an existing object: key, or an audience's name
    fields: frozenset[str]  # writable fields besides the match field
    required: frozenset[str]  # needed to create one, besides the match field
    needs_project_body: bool  # project_id goes in the POST body (not in the path)

    def collection(self, project_id: int) -> str:
        if self.name == "custom_events":
            return f"/projects/{project_id}/custom_events"
        return f"/{self.name}"

    def item(self, project_id: int, object_id: int) -> str:
        return f"{self.collection(project_id)}/{object_id}"

    @property
    def index(self) -> str:
        """Where existing objects are listed (``?project_id=``)."""
        return "/events" if self.name == "custom_events" else f"/{self.name}"


OBJECTS: dict[str, ObjectKind] = {
    "attributes": ObjectKind("attributes", "key", frozenset({"name", "description"}), frozenset(), True),
    "custom_events": ObjectKind(
        "custom_events", "key", frozenset({"name", "description", "category"}), frozenset(), False
    ),
    "audiences": ObjectKind(
        "audiences", "name", frozenset({"description", "conditions", "segmentation"}), frozenset({"conditions"}), True
    ),
}
