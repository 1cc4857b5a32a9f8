"""A project: profiles + ``models/*.sql`` + ``syncs/*.yml``, validated together.

Every problem found is collected and raised at once as :class:`ConfigErrors`, each naming its
file and line, so a user fixes them in one pass rather than one run per error.
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reverse_etl.config.profiles import ResolvedTarget, find_profiles, load_target
from reverse_etl.config.syncs import SyncConfig
from reverse_etl.config.validation import validate
from reverse_etl.config.warehouses import dialect_of
from reverse_etl.config.yamlfile import YamlDoc, load_yaml
from reverse_etl.dbt.manifest import dbt_models, dbt_ref
from reverse_etl.destinations.base import Destination
from reverse_etl.destinations.registry import destination_class, destination_types
from reverse_etl.errors import ConfigError, ConfigErrors, ModelError
from reverse_etl.modeling import Model, ModelGraph, load_models


@dataclass(frozen=True)
class SyncDef:
    """A validated sync and where it was defined."""

    config: SyncConfig
    file: str  # e.g. syncs/audiences.yml
    line: int | None
    group: str  # file stem

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


class Project:
    def __init__(
        self,
        root: Path,
        target: ResolvedTarget,
        models: dict[str, Model],
        graph: ModelGraph,
        syncs: dict[str, SyncDef],
        destinations: dict[str, Destination],
    ) -> None:
        self.root = root
        self.target = target
        self.models = models
        self.graph = graph
        self.syncs = syncs
        self.destinations = destinations

    @classmethod
    def load(
        cls,
        project_dir: str | Path = ".",
        *,
        target: str | None = None,
        profiles: str | Path | None = None,
        variables: dict[str, Any] | None = None,
    ) -> Project:
        root = Path(project_dir).resolve()
        if not root.is_dir():
            raise ConfigError(f"project directory {project_dir} does not exist")
        resolved = load_target(find_profiles(root, profiles), target)
        errors: list[Exception] = []
        destinations = _load_destinations(resolved, errors)
        vars_ = {**resolved.config.vars, **(variables or {})}
        dialect = dialect_of(resolved.config.warehouse)  # models are compiled for the warehouse they run in
        models, model_errors = load_models(root / "models", variables=vars_, root=root, target_dialect=dialect)
        errors.extend(model_errors)
        syncs = _load_syncs(root, errors)
        # A sync may read a dbt model (dbt:x, {{ ref('x') }}): the relation dbt built, from its manifest.
        dbt_refs = {s.config.model: s.where for s in syncs.values() if dbt_ref(s.config.model)}
        from_dbt, dbt_errors = dbt_models(dbt_refs, resolved.config.dbt_project, root, dialect)
        errors.extend(dbt_errors)
        models.update(from_dbt)
        graph: ModelGraph | None = None
        try:
            graph = ModelGraph(models)
        except ModelError as exc:
            errors.append(exc)
        declared = set(resolved.raw_destinations)  # a destination that failed to load has its own error
        for sync in syncs.values():
            errors.extend(_check_sync(sync, models, destinations, has_model_errors=bool(model_errors or dbt_errors),
                                      declared=declared))
        if errors:
            flat: list[ConfigError] = []
            for e in errors:
                if isinstance(e, ConfigErrors):
                    flat.extend(e.errors)
                elif isinstance(e, ConfigError):
                    flat.append(e)
                else:
                    flat.append(ConfigError(str(e)))
            raise flat[0] if len(flat) == 1 else ConfigErrors(flat)
        assert graph is not None
        return cls(root, resolved, models, graph, syncs, destinations)

    def select(self, selectors: list[str] | tuple[str, ...] | None) -> list[SyncDef]:
        """Syncs matching any selector: a name (globs ok), a file stem, ``tag:x``, ``destination:x``."""
        everything = [s for s in self.syncs.values() if s.config.enabled]
        if not selectors:
            return everything
        chosen: dict[str, SyncDef] = {}
        for selector in selectors:
            exact = [s for s in everything if s.name == selector]  # a sync's own name wins over a file stem
            found = exact or [s for s in everything if _matches(selector, s)]
            if not found:
                raise ConfigError(f"selector {selector!r} matches no sync", hint=_selector_hint(selector, everything))
            chosen.update({s.name: s for s in found})
        return [s for s in everything if s.name in chosen]

    def destination(self, sync: SyncDef) -> Destination:
        return self.destinations[sync.config.destination]

    def sandbox_options(self, destination: str) -> dict[str, Any]:
        """What the emulator of ``destination`` (``sandbox: true``) is started with."""
        return self.destinations[destination].sandbox_options(
            [s.config for s in self.syncs.values() if s.config.destination == destination]
        )

    def path(self, relative: str) -> Path:
        p = Path(relative)
        return p if p.is_absolute() else self.root / p


def _matches(selector: str, sync: SyncDef) -> bool:
    kind, _, value = selector.partition(":")
    if value and kind == "tag":
        return value in sync.config.tags
    if value and kind == "destination":
        return sync.config.destination == value
    if value and kind == "type":
        return sync.config.type == value
    if value and kind == "model":
        return sync.config.model == value
    return fnmatch.fnmatchcase(sync.name, selector) or sync.group == selector


def _selector_hint(selector: str, syncs: list[SyncDef]) -> str:
    candidates = sorted({s.name for s in syncs} | {s.group for s in syncs})
    close = difflib.get_close_matches(selector, candidates, n=1)
    if close:
        return f"did you mean {close[0]!r}?"
    return "select by sync name, sync file name (e.g. audiences), tag:NAME or destination:NAME"


def _load_destinations(target: ResolvedTarget, errors: list[Exception]) -> dict[str, Destination]:
    out: dict[str, Destination] = {}
    doc = load_yaml(target.path)
    for name, raw in target.raw_destinations.items():
        base = ("targets", target.name, "destinations", name)
        try:
            cls = destination_class(str(raw.get("type")))
        except KeyError:
            errors.append(ConfigError(
                f"destination {name!r}: unknown type {raw.get('type')!r}; one of {', '.join(destination_types())}",
                file=doc.where((*base, "type")),
            ))
            continue
        config, problems = validate(cls.config_model, raw, doc=doc, base=base, what=f"destination {name}")
        errors.extend(problems)
        if config is not None:
            out[name] = cls(name, config)
    return out


def _load_syncs(root: Path, errors: list[Exception]) -> dict[str, SyncDef]:
    syncs: dict[str, SyncDef] = {}
    sync_dir = root / "syncs"
    if not sync_dir.is_dir():
        return syncs
    files = sorted([*sync_dir.glob("*.yml"), *sync_dir.glob("*.yaml")])
    for path in files:
        shown = str(path.relative_to(root))
        try:
            doc = load_yaml(path, display=shown)
        except ConfigError as exc:
            errors.append(exc)
            continue
        data = doc.data
        if data is None:
            continue
        if not isinstance(data, dict) or not isinstance(data.get("syncs"), list):
            errors.append(ConfigError("a sync file holds `syncs:`, a list of syncs", file=shown))
            continue
        extra = sorted(set(data) - {"syncs"})
        if extra:
            errors.append(ConfigError(f"unknown top-level key(s) {extra}; a sync file holds only `syncs:`", file=doc.where((extra[0],))))
        for i, raw in enumerate(data["syncs"]):
            _add_sync(syncs, raw, doc, i, path.stem, errors)
    return syncs


def _add_sync(syncs: dict[str, SyncDef], raw: Any, doc: YamlDoc, i: int, group: str, errors: list[Exception]) -> None:
    label = raw.get("name") if isinstance(raw, dict) else None
    what = f"sync {label!r}" if label else f"sync #{i + 1}"
    config, problems = validate(SyncConfig, raw, doc=doc, base=("syncs", i), what=what)
    errors.extend(problems)
    if config is None:
        return
    sync = SyncDef(config, str(doc.path), doc.line(("syncs", i)), group)
    if config.name in syncs:
        errors.append(ConfigError(
            f"duplicate sync name {config.name!r} (first defined at {syncs[config.name].where})", file=sync.where
        ))
        return
    syncs[config.name] = sync


def _check_sync(
    sync: SyncDef, models: dict[str, Model], destinations: dict[str, Destination], has_model_errors: bool,
    declared: set[str] | frozenset[str] = frozenset(),
) -> list[ConfigError]:
    out: list[ConfigError] = []
    c = sync.config
    if c.model not in models and not has_model_errors:
        close = difflib.get_close_matches(c.model, list(models), n=1)
        out.append(ConfigError(
            f"sync {c.name!r}: model {c.model!r} not found (no models/{c.model}.sql)",
            file=sync.where,
            hint=f"did you mean {close[0]!r}?" if close else None,
        ))
    dest = destinations.get(c.destination)
    if dest is None and c.destination in declared:
        pass  # declared but invalid: its own error says why; "not defined" would mislead
    elif dest is None:
        close = difflib.get_close_matches(c.destination, list(destinations), n=1)
        out.append(ConfigError(
            f"sync {c.name!r}: destination {c.destination!r} is not defined in the target "
            f"(defined: {', '.join(sorted(destinations)) or 'none'})",
            file=sync.where,
            hint=f"did you mean {close[0]!r}?" if close else None,
        ))
    else:
        out.extend(ConfigError(f"sync {c.name!r}: {p}", file=sync.where) for p in dest.check_sync(c))
    return out
