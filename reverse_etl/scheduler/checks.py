"""Checks of ``schedule:`` blocks beyond their shape: cron syntax, time zones, ``after`` names.

Run when ``retl schedule`` starts (and whenever it reloads the project), so a typo is a clear
error naming the sync file and line rather than a sync that silently never runs.
"""

from __future__ import annotations

import graphlib
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from reverse_etl.errors import ConfigError, ConfigErrors
from reverse_etl.project import Project, SyncDef


def check_schedules(project: Project, syncs: list[SyncDef]) -> None:
    """Raise ConfigError(s) for every problem in the schedules of ``syncs``."""
    errors: list[ConfigError] = []
    graph: dict[str, set[str]] = {}
    for sync in syncs:
        schedule = sync.config.schedule
        if schedule is None:
            continue
        where, name = sync.where, sync.name

        def problem(message: str, hint: str | None = None, name: str = name, where: str = where) -> None:
            errors.append(ConfigError(f"sync {name!r}: schedule: {message}", file=where, hint=hint))

        if schedule.cron is not None and not croniter.is_valid(schedule.cron):
            problem(f"cron {schedule.cron!r} is not a cron expression", hint='five fields, e.g. "0 * * * *" (hourly)')
        if schedule.tz is not None:
            if schedule.cron is None:
                problem("tz only applies to cron")
            try:
                ZoneInfo(schedule.tz)
            except (ZoneInfoNotFoundError, ValueError):
                problem(f"tz {schedule.tz!r} is not a time zone", hint="an IANA name such as Europe/Berlin or UTC")
        if schedule.poll is not None and not (schedule.when_changed or schedule.after_dbt):
            problem("poll only applies to when_changed and after_dbt")
        if schedule.freshness_sql is not None and not schedule.when_changed:
            problem("freshness_sql only applies to when_changed")
        for other in schedule.after or []:
            if other == name:
                problem("a sync cannot run after itself")
            elif other not in project.syncs:
                problem(f"after names {other!r}, which is not a sync of this project")
        graph[name] = {o for o in schedule.after or [] if o in project.syncs and o != name}
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        errors.append(ConfigError(f"schedule: `after` chains form a cycle: {' -> '.join(exc.args[1])}"))
    if errors:
        raise errors[0] if len(errors) == 1 else ConfigErrors(errors)


def after_order(syncs: list[SyncDef]) -> list[SyncDef]:
    """``syncs`` with every sync after the ones it names in ``after`` (stable otherwise)."""
    by_name = {s.name: s for s in syncs}
    sorter = graphlib.TopologicalSorter(
        {s.name: [o for o in (s.config.schedule.after or []) if o in by_name] if s.config.schedule else [] for s in syncs}
    )
    position = {s.name: i for i, s in enumerate(syncs)}
    ordered: list[SyncDef] = []
    try:
        sorter.prepare()
    except graphlib.CycleError:
        return list(syncs)  # check_schedules reports the cycle
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=lambda n: position[n])
        ordered.extend(by_name[n] for n in ready)
        sorter.done(*ready)
    return ordered
