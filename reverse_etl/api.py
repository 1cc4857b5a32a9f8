"""The library API: what the CLI calls, and what orchestrators (Airflow, Dagster, cron) can call.

>>> import reverse_etl
>>> result = reverse_etl.sync("path/to/project", ["audiences"])
>>> result.exit_code, [r.as_dict() for r in result.runs]
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

from reverse_etl.errors import ConfigError, StateError
from reverse_etl.plan import PlanFile, redact_plan
from reverse_etl.project import Project
from reverse_etl.results import DiffResult, Reporter, SyncResult
from reverse_etl.runner import Runner
from reverse_etl.state import RunRecord, StateStore
from reverse_etl.state.reading import read_warehouse_state, state_in_warehouse


def _load(project_dir: str | Path, target: str | None, profiles: str | Path | None, variables: dict[str, Any] | None = None) -> Project:
    return Project.load(project_dir, target=target, profiles=profiles, variables=variables)


def validate(project_dir: str | Path = ".", *, target: str | None = None, profiles: str | Path | None = None) -> dict[str, Any]:
    """Load and check the whole project, including mapped columns against the models' columns."""
    from reverse_etl.scheduler.checks import check_schedules

    project = _load(project_dir, target, profiles)
    syncs = project.select(None)
    check_schedules(project, syncs)
    runner = Runner(project)
    with runner._session(syncs):
        pass
    return {
        "target": project.target.name,
        "models": sorted(project.models),
        "syncs": sorted(project.syncs),
        "destinations": sorted(project.destinations),
    }


def diff(
    project_dir: str | Path = ".",
    selectors: list[str] | None = None,
    *,
    target: str | None = None,
    profiles: str | Path | None = None,
    full_resync: bool = False,
    limit: int = 5,
    out: Path | None = None,
    variables: dict[str, Any] | None = None,
    reporter: Reporter | None = None,
    redact: bool = False,
) -> DiffResult:
    """Plan the selected syncs without sending anything. ``out`` saves the plan as JSON.

    ``redact`` replaces primary key and identifier values in the sample rows (what is returned
    and what ``out`` saves) by a stable hash (:mod:`reverse_etl.plan.redact`).
    """
    project = _load(project_dir, target, profiles, variables)
    result = Runner(project, reporter).diff(selectors, full_resync=full_resync, limit=limit)
    if redact:
        result.plans = [redact_plan(p, _identifying_columns(project, p.sync)) for p in result.plans]
    if out is not None:
        PlanFile(project.target.name, result.plans).write(out)
    return result


def _identifying_columns(project: Project, sync: str) -> set[str]:
    """The model columns that say who a row is: the primary key and every mapped identifier."""
    config = project.syncs[sync].config
    return {*config.key_columns, *config.identifiers.values()}


def sync(
    project_dir: str | Path = ".",
    selectors: list[str] | None = None,
    *,
    target: str | None = None,
    profiles: str | Path | None = None,
    full_resync: bool = False,
    force: bool = False,
    plan: Path | None = None,
    variables: dict[str, Any] | None = None,
    reporter: Reporter | None = None,
    trigger: str | None = None,
    wait: bool | float = False,
    stop: threading.Event | None = None,
) -> SyncResult:
    """Send what changed to the selected syncs' destinations; ``plan`` applies a saved plan exactly.

    Each sync runs under its lock: one another process is running is reported ``skipped``
    (already running), or waited for with ``wait`` (True: as long as it takes; a number: seconds),
    which also waits out a state store or warehouse busy with another process. Setting ``stop``
    ends the run after its current chunk. Alerts of the target's ``alerts:`` are fired.
    """
    from reverse_etl.scheduler.execute import locked_sync

    project = _load(project_dir, target, profiles, variables)
    plan_file = PlanFile.read(plan) if plan else None
    if plan_file is not None and plan_file.target != project.target.name:
        raise ConfigError(f"the plan was made for target {plan_file.target!r}, not {project.target.name!r}", file=str(plan))
    seconds = math.inf if wait is True else float(wait or 0)
    return locked_sync(project, selectors, reporter=reporter, full_resync=full_resync, force=force, plan_file=plan_file,
                       trigger=trigger, wait=seconds, stop=stop)


def history(
    project_dir: str | Path = ".", selectors: list[str] | None = None, *, target: str | None = None,
    profiles: str | Path | None = None, limit: int = 20,
) -> list[RunRecord]:
    """Recent runs, newest first, of the selected syncs (all if none)."""
    project = _load(project_dir, target, profiles)
    names = [s.name for s in project.select(selectors)] if selectors else None
    if state_in_warehouse(project):
        with read_warehouse_state(project) as store:
            return store.runs(names, limit=limit) if store else []
    path = project.path(project.target.config.state.path)
    if not path.exists():
        return []
    try:
        with StateStore.open(path, read_only=True) as state:
            return state.runs(names, limit=limit)
    except StateError as exc:
        from reverse_etl.scheduler.execute import is_busy
        from reverse_etl.scheduler.status import history_while_busy

        if not is_busy(exc):
            raise
        return history_while_busy(project, names, limit)  # a sync is running: say what we can


def run_detail(project_dir: str | Path, run_id: str, *, target: str | None = None, profiles: str | Path | None = None) -> RunRecord:
    """One run with its row-level errors; ``run_id`` may be a prefix."""
    project = _load(project_dir, target, profiles)
    path = project.path(project.target.config.state.path)
    record = None
    if state_in_warehouse(project):
        with read_warehouse_state(project) as store:
            record = store.run(run_id) if store else None
    elif path.exists():
        with StateStore.open(path, read_only=True) as state:
            record = state.run(run_id)
    if record is None:
        raise ConfigError(f"no run {run_id!r} in {path}", hint="`retl runs` lists run ids")
    return record


def sandbox_state(
    project_dir: str | Path, destination: str, *, user: str | None = None, target: str | None = None,
    profiles: str | Path | None = None,
) -> dict[str, Any]:
    """What the emulator of a ``sandbox: true`` destination holds (optionally one user)."""
    from reverse_etl.sandbox.manager import sandbox_state_path
    from reverse_etl.sandbox.registry import emulator_class

    project = _load(project_dir, target, profiles)
    dest = project.destinations.get(destination)
    if dest is None:
        raise ConfigError(f"no destination {destination!r} in target {project.target.name!r}")
    if not dest.config.sandbox:
        raise ConfigError(f"destination {destination!r} is not a sandbox (sandbox: true) in target {project.target.name!r}")
    path = sandbox_state_path(project.root, destination)
    emulator = emulator_class(dest.type_name)(state_path=path if path.exists() else None, **project.sandbox_options(destination))
    if user is None:
        summary = getattr(emulator, "summary", None)
        return {"destination": destination, "summary": summary() if callable(summary) else None, "state": emulator.dump()}
    for lookup in ("user", "profile_by_id"):
        fn = getattr(emulator, lookup, None)
        if callable(fn):
            found = fn(user)
            if found is None:
                raise ConfigError(f"the {destination} sandbox has no user {user!r}")
            return {"destination": destination, "user": user, "profile": found}
    raise ConfigError(f"the {dest.type_name} sandbox cannot look up single users; omit --user")
