"""Braze profile keys and the Braze-specific parts of a sync (``audience:``, ``event:``, ``catalog:``)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from reverse_etl.config.profiles import Strict
from reverse_etl.destinations.base import DestinationConfig

INSTANCES: dict[str, str] = {
    **{f"US-0{n}": f"https://rest.iad-0{n}.braze.com" for n in range(1, 9)},
    "US-10": "https://rest.iad-10.braze.com",
    "EU-01": "https://rest.fra-01.braze.eu",
    "EU-02": "https://rest.fra-02.braze.eu",
    "AU-01": "https://rest.au-01.braze.com",
}

IDENTIFIERS = ("external_id", "braze_id", "email", "phone")
# Keys an attributes object uses for itself: a field of that name would clash.
RESERVED_FIELDS = frozenset({"external_id", "braze_id", "user_alias", "_update_existing_only", "_merge_objects"})
MAX_PER_ARRAY = 75  # objects per /users/track array
MAX_IDS = 50  # ids per /users/delete and per subscription group, items per catalog request
MAX_TEXT = 255  # characters of a string value, attribute or property name
CATALOG_NAME = re.compile(r"[A-Za-z0-9_-]{1,250}")


class BrazeConfig(DestinationConfig):
    """``type: braze`` in a profile."""

    type: Literal["braze"] = "braze"
    instance: str | None = None
    api_key: SecretStr | None = None
    max_objects_combined: int | None = Field(
        default=None, ge=1, le=MAX_PER_ARRAY,
        description="objects per /users/track request in all (some contracts: 50 combined)",
    )

    @model_validator(mode="after")
    def _where(self) -> BrazeConfig:
        if self.instance is not None and self.instance.upper() not in INSTANCES:
            raise ValueError(f"unknown Braze instance {self.instance!r}; one of {', '.join(INSTANCES)}")
        if not self.sandbox:
            if not (self.instance or self.base_url):
                raise ValueError("a Braze destination needs `instance:` (e.g. US-03) or `base_url:`")
            if self.api_key is None:
                raise ValueError("a Braze destination needs `api_key:` (use {{ env_var('BRAZE_API_KEY') }})")
        return self


class BrazeAudience(Strict):
    """``audience:`` of a Braze audience sync: an attribute (boolean or array) or a subscription group."""

    name: str | None = None
    membership: Literal["boolean", "array"] = "boolean"
    attribute: str = "retl_audiences"  # the array attribute, for membership: array
    subscription_group_id: str | None = None

    @model_validator(mode="after")
    def _target(self) -> BrazeAudience:
        if (self.name is None) == (self.subscription_group_id is None):
            raise ValueError("give either `name:` (an attribute) or `subscription_group_id:` (a subscription group)")
        if self.subscription_group_id is not None and self.membership != "boolean":
            raise ValueError("`membership:` is for attribute audiences, not subscription groups")
        if self.name is not None and not self.name.strip():
            raise ValueError("`name:` must not be empty")
        return self


class BrazeEvent(Strict):
    """``event:`` of a Braze events sync: a literal name or ``{column: col}``, and the time column."""

    name: str | dict[str, str]
    time: str

    @model_validator(mode="after")
    def _name(self) -> BrazeEvent:
        if isinstance(self.name, dict) and set(self.name) != {"column"}:
            raise ValueError("event name is a literal or {column: <model column>}")
        if isinstance(self.name, str) and not 0 < len(self.name) <= MAX_TEXT:
            raise ValueError(f"event name must be 1 to {MAX_TEXT} characters")
        return self

    @property
    def name_column(self) -> str | None:
        return self.name["column"] if isinstance(self.name, dict) else None


def key_problem(key: str, what: str) -> str | None:
    """Why ``key`` cannot name a custom attribute or event property, or None."""
    if not key:
        return f"{what} names must not be empty"
    if len(key) > MAX_TEXT:
        return f"{what} name {key[:40]!r}... is {len(key)} characters; Braze allows {MAX_TEXT}"
    if key.startswith("$"):
        return f"{what} name {key!r} must not start with '$'"
    return None
