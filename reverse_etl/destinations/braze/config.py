"""Braze profile keys and the Braze-specific parts of a sync (``audience:``, ``event:``)."""

from __future__ import annotations

from typing import Literal

from pydantic import SecretStr, model_validator

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


class BrazeConfig(DestinationConfig):
    type: Literal["braze"] = "braze"
    instance: str | None = None
    api_key: SecretStr | None = None

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
    """``audience:`` of a Braze audience sync."""

    name: str
    membership: Literal["boolean", "array"] = "boolean"
    attribute: str = "retl_audiences"  # the array attribute, for membership: array


class BrazeEvent(Strict):
    """``event:`` of a Braze events sync: a literal name or ``{column: col}``, and the time column."""

    name: str | dict[str, str]
    time: str

    @model_validator(mode="after")
    def _name(self) -> BrazeEvent:
        if isinstance(self.name, dict) and set(self.name) != {"column"}:
            raise ValueError("event name is a literal or {column: <model column>}")
        return self

    @property
    def name_column(self) -> str | None:
        return self.name["column"] if isinstance(self.name, dict) else None
