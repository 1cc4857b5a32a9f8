"""``retl``: preview and sync warehouse audiences, traits and events to Braze, ODP and Optimizely."""

from __future__ import annotations

import functools
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from reverse_etl import __version__, secrets
from reverse_etl.cli import console
from reverse_etl.cli.signals import stop_on_signal
from reverse_etl.errors import ConfigError, RetlError
from reverse_etl.results import EXIT_ERROR

F = TypeVar("F", bound=Callable[..., Any])

FORMATS = click.Choice(["text", "json"])


class Context:
    def __init__(self, project_dir: str, profiles: str | None, target: str | None, fmt: str, debug: bool) -> None:
        self.project_dir = project_dir
        self.profiles = profiles
        self.target = target
        self.format = fmt
        self.debug = debug

    def load(self, variables: dict[str, Any] | None = None) -> Any:
        from reverse_etl.project import Project

        return Project.load(self.project_dir, target=self.target, profiles=self.profiles, variables=variables)


def common_options(f: F) -> F:
    """Options every command takes, so they can go before or after the command name."""
    options = [
        click.option("--project-dir", default=None, help="The project: holds models/, syncs/ and profiles.yml. Default: .", metavar="DIR"),
        click.option("--profiles", default=None, help="Profiles file. Default: $RETL_PROFILES, ./profiles.yml, ./profiles.example.yml.", metavar="PATH"),
        click.option("--target", "-t", default=None, help="Target in the profiles file. Default: $RETL_TARGET, then the file's `target:`."),
        click.option("--debug", is_flag=True, default=None, help="Show tracebacks of unexpected errors."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _ctx(click_ctx: click.Context, project_dir: str | None, profiles: str | None, target: str | None, debug: bool | None, fmt: str = "text") -> Context:
    root: Context = click_ctx.find_root().obj
    return Context(
        project_dir or root.project_dir, profiles or root.profiles, target or root.target, fmt, bool(debug) or root.debug
    )


def handle_errors(f: F) -> F:
    """Turn RetlError into a clear message and exit 1; with --format json, also a JSON error."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except RetlError as exc:
            fmt = kwargs.get("fmt", "text")
            if fmt == "json":
                console.print_json({"error": str(exc), "type": type(exc).__name__})
            console.error(str(exc))  # both redact registered secrets
            sys.exit(EXIT_ERROR)
        except (click.exceptions.Exit, click.ClickException, SystemExit, KeyboardInterrupt):
            raise
        except Exception as exc:
            ctx = click.get_current_context()
            root = ctx.find_root().obj
            if (root and root.debug) or kwargs.get("debug"):
                # a traceback quotes exception messages, which may quote a request: mask secrets
                sys.stderr.write(secrets.redact("".join(traceback.format_exception(exc))))
            if kwargs.get("fmt") == "json":
                console.print_json({"error": f"unexpected {type(exc).__name__}: {exc}", "type": type(exc).__name__})
            console.error(f"unexpected {type(exc).__name__}: {exc} (rerun with --debug for the traceback; please report it)")
            sys.exit(EXIT_ERROR)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="retl")
@click.option("--project-dir", default=".", show_default=True, help="The project: holds models/, syncs/ and profiles.yml.", metavar="DIR")
@click.option("--profiles", default=None, help="Profiles file. Default: $RETL_PROFILES, ./profiles.yml, ./profiles.example.yml.", metavar="PATH")
@click.option("--target", "-t", default=None, help="Target in the profiles file. Default: $RETL_TARGET, then the file's `target:`.")
@click.option("--debug", is_flag=True, help="Show tracebacks of unexpected errors.")
@click.pass_context
def cli(ctx: click.Context, project_dir: str, profiles: str | None, target: str | None, debug: bool) -> None:
    """reverse_etl: sync warehouse models to Braze, Optimizely Data Platform and Optimizely.

    \b
    SQL models (models/*.sql) define audiences, traits and events; syncs (syncs/*.yml) say where
    each goes. retl diffs every model against a snapshot of what the destination is known to hold
    and sends only what changed.

    \b
    Typical use:
      retl validate                 check profiles, models and syncs
      retl diff audiences           preview what `sync` would send (syncs/audiences.yml)
      retl sync audiences           send it
      retl runs                     history of runs

    SELECTOR (diff, sync, runs) is a sync name (globs allowed), a sync file name (audiences),
    tag:NAME, destination:NAME, type:TYPE or model:NAME; several may be given. None means all.
    """
    ctx.obj = Context(project_dir, profiles, target, "text", debug)


@cli.command()
@common_options
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True, help="Output format.")
@click.pass_context
@handle_errors
def validate(ctx: click.Context, project_dir: str | None, profiles: str | None, target: str | None, debug: bool | None, fmt: str) -> None:
    """Check profiles, models and syncs, and that every mapped column exists.

    Builds the models in the warehouse (without computing them) to learn their columns. Every
    problem is reported at once with its file and line. Exit 0 if all is well, 1 otherwise.
    """
    from reverse_etl.api import validate as do_validate

    c = _ctx(ctx, project_dir, profiles, target, debug, fmt)
    summary = do_validate(c.project_dir, target=c.target, profiles=c.profiles)
    if fmt == "json":
        console.print_json({"valid": True, **summary})
    else:
        console.out.print(
            f"[green]OK[/] target {summary['target']}: {len(summary['models'])} models, {len(summary['syncs'])} syncs, "
            f"destinations {', '.join(summary['destinations']) or 'none'}"
        )


def _diff_options(f: F) -> F:
    f = click.option("--limit", default=5, show_default=True, type=click.IntRange(0), help="Sample rows shown per kind (added/changed/removed).")(f)
    f = click.option("--full-resync", is_flag=True, help="Ignore the snapshot: plan to send every row again.")(f)
    f = click.option("--out", "out_path", type=click.Path(dir_okay=False), help="Save the plan as JSON, to apply later with `retl sync --plan`.")(f)
    f = _redact_option(f)
    return f


def _redact_option(f: F) -> F:
    return click.option(
        "--redact", is_flag=True,
        help="Show primary key and identifier values in sample rows as a stable hash (sha256:...), e.g. for a pull-request comment.",
    )(f)


@cli.command()
@click.argument("selectors", nargs=-1)
@common_options
@_diff_options
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text", show_default=True,
              help="text for people, json for tools, markdown for a pull-request comment.")
@click.pass_context
@handle_errors
def diff(ctx: click.Context, selectors: tuple[str, ...], project_dir: str | None, profiles: str | None, target: str | None,
         debug: bool | None, limit: int, full_resync: bool, out_path: str | None, redact: bool, fmt: str) -> None:
    """Preview what `retl sync SELECTOR` would send, without sending anything.

    For each selected sync: rows added, changed (with before → after values) and removed against
    the snapshot of what the destination holds, and whether a guard would stop the sync.
    Exit 0, or 1 if a sync could not be planned (e.g. duplicate primary keys).
    """
    from reverse_etl.api import diff as do_diff

    c = _ctx(ctx, project_dir, profiles, target, debug, fmt)
    result = do_diff(c.project_dir, list(selectors), target=c.target, profiles=c.profiles, full_resync=full_resync, limit=limit,
                     out=Path(out_path) if out_path else None, redact=redact)
    console.render_plans(result, fmt)
    if out_path and fmt == "text":
        console.out.print(f"[dim]plan saved to {out_path}; apply it with: retl sync --plan {out_path}[/]")
    sys.exit(result.exit_code)


@cli.command()
@click.argument("selectors", nargs=-1)
@common_options
@click.option("--dry-run", is_flag=True, help="Plan only, send nothing: the same as `retl diff`.")
@click.option("--full-resync", is_flag=True, help="Ignore the snapshot and send every row again.")
@click.option("--force", is_flag=True, help="Apply plans even where a guard (e.g. max_removals) would refuse.")
@click.option("--plan", "plan_path", type=click.Path(exists=True, dir_okay=False), help="Apply exactly this saved plan (from `retl diff --out`); refuse if the data moved since.")
@click.option("--limit", default=5, show_default=True, type=click.IntRange(0), help="With --dry-run: sample rows shown per kind.")
@_redact_option
@click.option("--wait", is_flag=True, help="If another process is running a selected sync, wait for it instead of skipping that sync.")
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True, help="json prints only JSON on stdout.")
@click.pass_context
@handle_errors
def sync(ctx: click.Context, selectors: tuple[str, ...], project_dir: str | None, profiles: str | None, target: str | None,
         debug: bool | None, dry_run: bool, full_resync: bool, force: bool, plan_path: str | None, limit: int, redact: bool,
         wait: bool, fmt: str) -> None:
    """Send what changed since the last sync to each selected sync's destination.

    Only rows the destination accepted enter the snapshot; rejected or undelivered rows are
    recorded (see `retl runs show RUN_ID`) and sent again by the next run.

    SIGTERM or Ctrl-C stops the run after its current chunk (status interrupted, exit 1);
    a second signal exits at once. Either way the next run sends exactly what is missing.

    \b
    Exit codes: 0 everything synced; 1 an error (config, warehouse, destination, guard)
    or an interrupted run, and nothing unsafe done; 2 the run completed but some rows were
    rejected.
    """
    from reverse_etl.api import diff as do_diff
    from reverse_etl.api import sync as do_sync

    c = _ctx(ctx, project_dir, profiles, target, debug, fmt)
    if dry_run:
        result = do_diff(c.project_dir, list(selectors), target=c.target, profiles=c.profiles, full_resync=full_resync, limit=limit,
                         redact=redact)
        console.render_plans(result, fmt)
        sys.exit(result.exit_code)
    if redact:
        raise ConfigError("--redact applies to previews, and `retl sync` sends rows", hint="use `retl sync --dry-run --redact` or `retl diff --redact`")
    reporter = console.TextReporter(show_progress=fmt == "text")
    with stop_on_signal(threading.Event()) as stop:
        sync_result = do_sync(
            c.project_dir, list(selectors), target=c.target, profiles=c.profiles, full_resync=full_resync, force=force,
            plan=Path(plan_path) if plan_path else None, reporter=reporter, wait=wait, stop=stop,
        )
    console.render_runs_result(sync_result, fmt)
    sys.exit(sync_result.exit_code)


@cli.command(context_settings={"ignore_unknown_options": False})
@click.argument("selectors", nargs=-1)
@common_options
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1), help="How many runs to list.")
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True)
@click.pass_context
@handle_errors
def runs(ctx: click.Context, selectors: tuple[str, ...], project_dir: str | None, profiles: str | None, target: str | None,
         debug: bool | None, limit: int, fmt: str) -> None:
    """History of sync runs, newest first; `retl runs show RUN_ID` lists one run's row errors.

    \b
    retl runs                      the last runs of every sync
    retl runs audiences            the last runs of the syncs in syncs/audiences.yml
    retl runs show 3f2a9c          one run (an id prefix is enough): counts, error, and each
                                   row rejected or not delivered, with the reason
    """
    from reverse_etl.api import history, run_detail

    c = _ctx(ctx, project_dir, profiles, target, debug, fmt)
    if selectors and selectors[0] == "show":
        if len(selectors) != 2:
            raise click.UsageError("usage: retl runs show RUN_ID")
        console.render_run_detail(run_detail(c.project_dir, selectors[1], target=c.target, profiles=c.profiles), fmt)
        return
    console.render_history(history(c.project_dir, list(selectors), target=c.target, profiles=c.profiles, limit=limit), fmt)


@cli.group()
def sandbox() -> None:
    """Local emulators of the destination APIs (no account, no network)."""


@sandbox.command("serve")
@click.argument("name", type=click.Choice(["braze", "odp", "optimizely"]))
@click.option("--port", default=0, type=click.IntRange(0, 65535), help="Port on 127.0.0.1 (0: any free port).")
@click.option("--api-key", default=None, help="The key the emulator accepts (default: sandbox-key).")
@click.option("--state", "state_path", type=click.Path(dir_okay=False), default=None, help="Keep the emulator's state in this JSON file.")
@click.option("--fail-rate", default=0.0, type=click.FloatRange(0, 1), help="Share of requests answered 503.")
@click.option("--throttle-rate", default=0.0, type=click.FloatRange(0, 1), help="Share of requests answered 429.")
@click.option("--drop-rate", default=0.0, type=click.FloatRange(0, 1), help="Share of connections dropped without an answer.")
@click.option("--reject-rate", default=0.0, type=click.FloatRange(0, 1), help="Share of objects rejected with a per-object error.")
@click.option("--latency-ms", default=0.0, type=click.FloatRange(0), help="Delay before every answer.")
@click.option("--lost-reply-rate", default=0.0, type=click.FloatRange(0, 1),
              help="Share of requests applied whose answer is then dropped (the client resends: duplicates where the API has no idempotency key).")
@click.option("--slow-rate", default=0.0, type=click.FloatRange(0, 1), help="Share of requests answered --slow-ms later.")
@click.option("--slow-ms", default=1000.0, show_default=True, type=click.FloatRange(0), help="Extra delay of a slow answer.")
@click.option("--rate-limit", default=None, metavar="N/SECONDS", help="Answer 429 past N requests per SECONDS, e.g. 3000/3.")
@click.option("--seed", default=None, type=int, help="Seed of the fault draws, for repeatable runs.")
def sandbox_serve(name: str, port: int, api_key: str | None, state_path: str | None, fail_rate: float, throttle_rate: float,
                  drop_rate: float, reject_rate: float, latency_ms: float, lost_reply_rate: float, slow_rate: float,
                  slow_ms: float, rate_limit: str | None, seed: int | None) -> None:
    """Run one emulator on 127.0.0.1 in the foreground until Ctrl-C.

    Point a profile at it with base_url (Braze: http://127.0.0.1:PORT, ODP: .../v3,
    Optimizely: .../v2 and events_url .../v1/events).
    """
    from reverse_etl.sandbox import Faults, RateLimit, SandboxServer, emulator_class

    limit = None
    if rate_limit:
        try:
            n, _, seconds = rate_limit.partition("/")
            limit = RateLimit(int(n), float(seconds or 1))
        except ValueError:
            raise click.BadParameter("write it as N/SECONDS, e.g. 3000/3", param_hint="--rate-limit") from None
    faults = Faults(fail_rate=fail_rate, throttle_rate=throttle_rate, drop_rate=drop_rate, reject_rate=reject_rate,
                    latency_ms=latency_ms, lost_reply_rate=lost_reply_rate, slow_rate=slow_rate, slow_ms=slow_ms, seed=seed)
    emulator = emulator_class(name)(api_key=api_key, faults=faults, rate_limit=limit, state_path=state_path)
    server = SandboxServer(emulator, port=port)
    # A key given with --api-key may be a real one reused by mistake: never echo it.
    key = "the one given with --api-key" if api_key else emulator.api_key
    console.err.print(f"{name} emulator listening on {server.url} (api key {key}); Ctrl-C to stop")
    sys.stdout.write(f"{server.url}\n")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


@sandbox.command("show")
@click.argument("destination")
@click.option("--user", "user", default=None, help="Show one user/profile by its id (external_id, email, ...).")
@common_options
@click.option("--format", "fmt", type=FORMATS, default="json", show_default=True)
@click.pass_context
@handle_errors
def sandbox_show(ctx: click.Context, destination: str, user: str | None, project_dir: str | None, profiles: str | None,
                 target: str | None, debug: bool | None, fmt: str) -> None:
    """Print what a sandbox destination holds after `sandbox: true` runs (DESTINATION: its profile name)."""
    from reverse_etl.api import sandbox_state

    c = _ctx(ctx, project_dir, profiles, target, debug, fmt)
    console.print_json(sandbox_state(c.project_dir, destination, user=user, target=c.target, profiles=c.profiles))


from reverse_etl.cli.init import init_command  # noqa: E402 - beside the other late command imports
from reverse_etl.cli.schedule import command as schedule_command  # noqa: E402 - it uses the helpers above

cli.add_command(schedule_command())
cli.add_command(init_command())


def main() -> None:
    cli(prog_name="retl")

