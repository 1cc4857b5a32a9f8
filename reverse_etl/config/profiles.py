"""Profiles: where the warehouse, the state store and each destination of a target are."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from reverse_etl.config.durations import parse_duration
from reverse_etl.config.templating import render_tree
from reverse_etl.config.validation import validate
from reverse_etl.config.warehouses import DuckDBWarehouseConfig as DuckDBWarehouseConfig
from reverse_etl.config.warehouses import WarehouseConfig
from reverse_etl.config.yamlfile import load_yaml
from reverse_etl.errors import ConfigError, ConfigErrors


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StateConfig(Strict):
    """Where snapshots and run history live.

    ``type: local`` is a DuckDB file (``path``); the diff then runs in a local DuckDB engine, and
    a model of a remote warehouse is pulled into it. ``type: warehouse`` keeps them in the
    warehouse's ``schema`` (default ``_retl``): the diff runs there and only the delta leaves it.
    Unset: ``warehouse`` for remote warehouses, ``local`` for DuckDB. ``state: local`` is short
    for ``{type: local}``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    type: Literal["local", "warehouse"] | None = None
    path: str = ".retl/state.duckdb"
    schema_: str = Field(default="_retl", alias="schema", min_length=1)
    keep_runs: int = Field(default=1000, ge=1, description="run records kept per sync")
    # State in Snowflake, BigQuery, Databricks: how long the run's lease on the state outlives a
    # process that died holding it (renewed every third of it while the run lives).
    lock_lease: str | float = Field(default="5m", description="lease on the state (warehouses without a lock)")
    # Spark / Databricks snapshots are append-only logs, rewritten to their live rows once they
    # hold more than compact_ratio rows per live row and more than compact_min_rows rows.
    compact_ratio: float = Field(default=4.0, gt=1)
    compact_min_rows: int = Field(default=10_000, ge=0)

    @field_validator("lock_lease")
    @classmethod
    def _lease(cls, value: str | float) -> str | float:
        if parse_duration(value) < 30:
            raise ValueError("lock_lease must be at least 30s (the lease is renewed every third of it)")
        return value

    @property
    def lock_lease_s(self) -> int:
        return int(parse_duration(self.lock_lease))

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"type": data}
        return data

    def in_warehouse(self, warehouse: Any) -> bool:
        """True when the state (and so the diff) lives in ``warehouse``."""
        if isinstance(warehouse, DuckDBWarehouseConfig):
            return False
        return self.type != "local"


AlertKind = Literal["failure", "rejected", "guard"]
ALERT_KINDS: tuple[AlertKind, ...] = ("failure", "rejected", "guard")


class AlertsConfig(Strict):
    """Where ``retl sync`` and ``retl schedule`` report runs that need a person (docs/scheduling.md)."""

    webhook: str | None = Field(default=None, description="URL that receives a JSON POST per alert")
    command: str | None = Field(default=None, description="shell command run with the alert JSON on stdin")
    on: list[AlertKind] = Field(default_factory=lambda: list(ALERT_KINDS))
    rejected_threshold: int = Field(default=0, ge=0, description="alert when more rows than this were not delivered")
    timeout_s: float = Field(default=10.0, gt=0)

    @field_validator("webhook")
    @classmethod
    def _webhook(cls, value: str | None) -> str | None:
        from reverse_etl.config.urls import check_url

        return None if value is None else check_url(value, "webhook")

    @model_validator(mode="after")
    def _somewhere(self) -> AlertsConfig:
        if not (self.webhook or self.command):
            raise ValueError("alerts need a `webhook:` URL, a `command:`, or both")
        return self


class TargetConfig(Strict):
    warehouse: WarehouseConfig = Field(default_factory=DuckDBWarehouseConfig)
    state: StateConfig = Field(default_factory=StateConfig)
    alerts: AlertsConfig | None = None
    destinations: dict[str, dict[str, Any]] = Field(default_factory=dict)
    vars: dict[str, Any] = Field(default_factory=dict)
    dbt_project: str | None = Field(
        default=None, description="dbt project dir (or its target/manifest.json) for syncs of `model: dbt:<name>`"
    )

    @model_validator(mode="after")
    def _state_fits_warehouse(self) -> TargetConfig:
        if isinstance(self.warehouse, DuckDBWarehouseConfig) and self.state.type == "warehouse":
            raise ValueError("state: the DuckDB warehouse is opened read-only; its state lives in the local file (state: local)")
        return self

    @field_validator("destinations")
    @classmethod
    def _each_has_type(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for name, conf in value.items():
            if not isinstance(conf, dict) or "type" not in conf:
                raise ValueError(f"destination {name!r} needs a `type:` (braze, odp or optimizely)")
        return value


class ProfilesFile(Strict):
    target: str | None = None
    targets: dict[str, TargetConfig]


PROFILE_CANDIDATES = ("profiles.yml", "profiles.example.yml")


def find_profiles(project_dir: Path, explicit: str | Path | None = None) -> Path:
    """``--profiles`` > ``$RETL_PROFILES`` > ``./profiles.yml`` > ``./profiles.example.yml``."""
    if explicit:
        path = Path(explicit)
        if not path.is_absolute() and not path.exists():
            path = project_dir / path
        if not path.exists():
            raise ConfigError(f"profiles file {explicit} does not exist")
        return path
    env = os.environ.get("RETL_PROFILES")
    if env:
        path = Path(env)
        if not path.exists():
            raise ConfigError(f"profiles file {env} (from $RETL_PROFILES) does not exist")
        return path
    for name in PROFILE_CANDIDATES:
        if (project_dir / name).exists():
            return project_dir / name
    raise ConfigError(
        f"no profiles.yml or profiles.example.yml in {project_dir}",
        hint="create one (see profiles.example.yml in the reverse_etl repo) or pass --profiles PATH",
    )


class ResolvedTarget:
    """The chosen target of a profiles file, with env vars rendered."""

    def __init__(self, path: Path, name: str, config: TargetConfig, raw_destinations: dict[str, dict[str, Any]]) -> None:
        self.path = path
        self.name = name
        self.config = config
        self.raw_destinations = raw_destinations


def load_target(path: Path, target: str | None = None) -> ResolvedTarget:
    """Load ``path`` and resolve ``--target`` > ``$RETL_TARGET`` > the file's ``target:``."""
    doc = load_yaml(path)
    if not isinstance(doc.data, dict):
        raise ConfigError("a profiles file must be a mapping with `targets:`", file=str(path))
    parsed, errors = validate(ProfilesFile, doc.data, doc=doc, base=(), what="profiles")
    if errors or parsed is None:
        raise ConfigErrors(errors) if len(errors) > 1 else errors[0]
    chosen = target or os.environ.get("RETL_TARGET") or parsed.target
    if not chosen:
        if len(parsed.targets) == 1:
            chosen = next(iter(parsed.targets))
        else:
            raise ConfigError("no target chosen", file=str(path), hint="set `target:` in the file, $RETL_TARGET or --target")
    if chosen not in parsed.targets:
        raise ConfigError(
            f"target {chosen!r} is not defined (targets: {', '.join(sorted(parsed.targets))})", file=str(path)
        )
    raw = doc.data["targets"][chosen] or {}
    # Render env vars only in the chosen target, so prod secrets need not be set to run dev.
    rendered = render_tree(raw, where=f"{path}: target {chosen}: ")
    config, errors = validate(TargetConfig, rendered, doc=doc, base=("targets", chosen), what=f"target {chosen}")
    if errors or config is None:
        raise ConfigErrors(errors) if len(errors) > 1 else errors[0]
    return ResolvedTarget(path, chosen, config, dict(rendered.get("destinations") or {}))
