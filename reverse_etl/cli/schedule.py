"""``retl schedule``: run syncs unattended, by their ``schedule:`` (registered in cli/main.py)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from datetime import datetime

import click
import orjson

from reverse_etl.cli import console
from reverse_etl.results import SyncResult, SyncRun
from reverse_etl.scheduler.triggers import Decision
from reverse_etl.secrets import RedactingFilter

LOGGER = "reverse_etl.scheduler"
FORMATS = click.Choice(["text", "json"])


def _log_to_stderr() -> Callable[[], None]:
    """Scheduler progress to stderr for the length of the command; returns the undo."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    handler.addFilter(RedactingFilter())  # no API key in a logged error, nor in its traceback
    logger = logging.getLogger(LOGGER)
    before = (logger.level, logger.propagate)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False

    def undo() -> None:
        logger.removeHandler(handler)
        logger.level, logger.propagate = before

    return undo


def command() -> click.Command:
    """Build ``retl schedule``. Built on call, not at import: it shares cli/main.py's options, and
    main.py registers it, so neither module imports the other while it is half loaded."""
    from reverse_etl.cli.main import _ctx, common_options, handle_errors

    @click.command(name="schedule")
    @click.argument("selectors", nargs=-1)
    @common_options
    @click.option("--once", is_flag=True, help="Run what is due now (and what is chained after it), then exit. For cron, Airflow, Kubernetes CronJobs.")
    @click.option("--wait", is_flag=True, help="Wait for a due sync that another process is running (or a busy state store) instead of skipping it.")
    @click.option("--max-runs", type=click.IntRange(1), default=None, metavar="N", help="Exit after N sync runs.")
    @click.option("--format", "fmt", type=FORMATS, default="text", show_default=True,
                  help="json: one JSON object per line per run; with --once, one {\"runs\": [...]} document.")
    @click.pass_context
    @handle_errors
    def schedule(ctx: click.Context, selectors: tuple[str, ...], project_dir: str | None, profiles: str | None, target: str | None,
                 debug: bool | None, once: bool, wait: bool, max_runs: int | None, fmt: str) -> None:
        """Run the selected syncs (default: all) whenever their `schedule:` says, in the foreground.

        \b
        schedule: {cron: "0 6 * * *", tz: Europe/Berlin}   at cron times (default tz UTC)
        schedule: {every: 15m}                              every 15 minutes
        schedule: {when_changed: true, poll: 1m}            when the model's inputs changed
        schedule: {after: [other_sync]}                     after other_sync completed
        schedule: {after_dbt: target/run_results.json}      after a dbt run built its inputs

        Runs missed while nothing was scheduling are made up by one run, not one per miss. A sync
        another process is running is skipped (retried later) or, with --wait, waited for. Between
        runs nothing is held open: dbt or a notebook may write the warehouse.

        Ctrl-C or SIGTERM stops: the running sync finishes its current chunk, then the scheduler
        exits 0; a second signal exits at once. Progress goes to stderr, runs to stdout.

        \b
        Exit codes (--once, --max-runs): as `retl sync`: 0 all well or nothing due;
        1 an error, a guard or an interrupted run; 2 some rows were rejected
        (retried next run).
        See docs/scheduling.md.
        """
        from reverse_etl.project import Project
        from reverse_etl.scheduler.loop import Scheduler

        c = _ctx(ctx, project_dir, profiles, target, debug, fmt)
        undo_logging = _log_to_stderr()
        runs: list[SyncRun] = []

        def on_run(run: SyncRun, decision: Decision) -> None:
            runs.append(run)
            if fmt == "json":
                if not once:
                    line = {"at": datetime.now().astimezone().isoformat(), "trigger": decision.trigger,
                            "reason": decision.reason, **run.as_dict()}
                    sys.stdout.write(orjson.dumps(line).decode() + "\n")
                    sys.stdout.flush()
                return
            console.render_runs_result(SyncResult([run]), "text")

        def load() -> Project:
            return Project.load(c.project_dir, target=c.target, profiles=c.profiles)

        try:
            scheduler = Scheduler(load, selectors=list(selectors) or None, once=once, wait=wait, max_runs=max_runs,
                                  on_run=on_run, reporter=console.TextReporter(show_progress=False))
            project = scheduler.reload()
            names = ", ".join(s.name for s in scheduler.scheduled(project))
            logging.getLogger(LOGGER).info(
                "%s %s (target %s)%s", "checking" if once else "scheduling", names, project.target.name,
                "" if once else "; Ctrl-C to stop",
            )
            code = scheduler.run()
        finally:
            undo_logging()
        if fmt == "json" and once:
            console.print_json(SyncResult(runs).as_dict())
        elif once and not runs and fmt == "text":
            console.out.print("Nothing due.")
        # A foreground scheduler stopped by a signal did its job; one-shot modes report like `retl sync`.
        sys.exit(code if (once or max_runs is not None) else 0)

    return schedule
