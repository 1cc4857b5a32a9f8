"""Sync definitions: ``syncs/<group>.yml`` files holding a ``syncs:`` list."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from reverse_etl.config.durations import parse_duration
from reverse_etl.config.profiles import Strict

SyncType = Literal["audience", "records", "events"]

MODES: dict[str, tuple[str, ...]] = {
    "records": ("upsert", "update", "insert", "mirror"),
    "audience": ("add", "remove", "mirror"),
    "events": ("insert",),
}
DEFAULT_MODE = {"records": "upsert", "audience": "mirror", "events": "insert"}

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


class GuardConfig(Strict):
    """Refuse to apply a plan bigger than expected unless ``--force``."""

    max_removals: int | str | None = Field(default=None, description="rows, or a percentage of the snapshot: 10%")
    max_changes: int | str | None = Field(default=None, description="added+changed+removed, rows or %")

    @field_validator("max_removals", "max_changes")
    @classmethod
    def _limit(cls, value: int | str | None) -> int | str | None:
        if value is None or isinstance(value, int):
            if isinstance(value, int) and value < 0:
                raise ValueError("must be >= 0")
            return value
        if not _PERCENT.match(value):
            raise ValueError(f"{value!r} is neither a row count nor a percentage like 10%")
        return value

    @staticmethod
    def threshold(limit: int | str | None, base: int) -> float | None:
        """The limit as a row count, given the snapshot size ``base`` for percentages."""
        if limit is None:
            return None
        if isinstance(limit, int):
            return float(limit)
        match = _PERCENT.match(limit)
        assert match
        return float(match.group(1)) / 100.0 * base


class ScheduleConfig(Strict):
    """When a sync runs unattended (``retl schedule``)."""

    cron: str | None = None
    every: str | None = None
    when_changed: bool = False
    poll: str | None = None
    tz: str | None = None
    after: list[str] | None = None
    after_dbt: str | None = None
    freshness_sql: str | None = None

    @field_validator("every", "poll")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @model_validator(mode="after")
    def _one_trigger(self) -> ScheduleConfig:
        triggers = [self.cron, self.every, self.when_changed or None, self.after, self.after_dbt]
        if sum(t is not None for t in triggers) == 0:
            raise ValueError("a schedule needs one of: cron, every, when_changed, after, after_dbt")
        return self


class SyncConfig(Strict):
    """One sync: a model's rows pushed to one destination in one mode."""

    name: str
    model: str
    destination: str
    type: SyncType
    mode: str | None = None
    primary_key: str | list[str]
    identifiers: dict[str, str]
    fields: dict[str, str] = Field(default_factory=dict)
    audience: dict[str, Any] | None = None
    event: dict[str, Any] | None = None
    object: str | None = None
    catalog: str | None = None
    on_remove: Literal["clear", "delete"] = "clear"
    schedule: ScheduleConfig | None = None
    guard: GuardConfig | None = None
    tags: list[str] = Field(default_factory=list)

    @field_validator("model")
    @classmethod
    def _dbt_model(cls, value: str) -> str:
        # `{{ ref('x') }}` and `dbt:x` both name dbt model x; one spelling everywhere after this.
        from reverse_etl.dbt.manifest import PREFIX, dbt_ref

        name = dbt_ref(value)
        return f"{PREFIX}{name}" if name else value
    description: str | None = None
    enabled: bool = True

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("a sync name uses letters, digits, _ and - and starts with a letter or _")
        return value

    @field_validator("primary_key")
    @classmethod
    def _pk(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and not value:
            raise ValueError("primary_key needs at least one column")
        return value

    @field_validator("identifiers")
    @classmethod
    def _identifiers(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("at least one identifier is needed, e.g. {external_id: user_id}")
        return value

    @model_validator(mode="after")
    def _mode_and_shape(self) -> SyncConfig:
        if self.mode is None:
            object.__setattr__(self, "mode", DEFAULT_MODE[self.type])
        if self.mode not in MODES[self.type]:
            raise ValueError(f"mode {self.mode!r} is not valid for type {self.type}; use one of {', '.join(MODES[self.type])}")
        if self.type == "audience" and not self.audience:
            raise ValueError("an audience sync needs `audience:` (what membership to set in the destination)")
        if self.type == "events" and not self.event:
            raise ValueError("an events sync needs `event:` (its name and time column)")
        if self.type != "audience" and self.audience:
            raise ValueError("`audience:` is only for type: audience")
        if self.type != "events" and self.event:
            raise ValueError("`event:` is only for type: events")
        return self

    @property
    def key_columns(self) -> list[str]:
        return [self.primary_key] if isinstance(self.primary_key, str) else list(self.primary_key)

    @property
    def effective_mode(self) -> str:
        assert self.mode is not None
        return self.mode


class SyncFile(Strict):
    syncs: list[SyncConfig]
