"""All terminal output of the CLI: rich text for people, JSON or Markdown for machines."""

from __future__ import annotations

import sys
from typing import Any

import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from reverse_etl import secrets
from reverse_etl.plan import SyncPlan
from reverse_etl.results import DiffResult, SyncResult, SyncRun
from reverse_etl.state import RunRecord

# Piped output (CI logs, files) gets a wide fixed width so tables are not squeezed to 80 columns.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, soft_wrap=True, width=None if sys.stderr.isatty() else 200)


def print_json(data: Any) -> None:
    text = orjson.dumps(data, option=orjson.OPT_INDENT_2, default=str).decode()
    sys.stdout.write(secrets.redact(text) + "\n")  # a key in any string (an error, a reason) is masked
    sys.stdout.flush()


def error(message: str) -> None:
    err.print(f"[bold red]error:[/] {secrets.redact(message)}", markup=True, highlight=False)


def _fmt(value: Any) -> str:
    if value is None:
        return "∅"
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


class TextReporter:
    """Progress bars and per-sync lines while a command runs (text format only)."""

    def __init__(self, show_progress: bool = True) -> None:
        self._progress: Progress | None = None
        self._tasks: dict[str, Any] = {}
        self.show_progress = show_progress and err.is_terminal

    def plan_ready(self, plan: SyncPlan) -> None:
        return None

    def progress(self, sync: str, done: int, total: int) -> None:
        if not self.show_progress or total < 2000:
            return
        if self._progress is None:
            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=err, transient=True
            )
            self._progress.start()
        if sync not in self._tasks:
            self._tasks[sync] = self._progress.add_task(sync, total=total)
        self._progress.update(self._tasks[sync], completed=done)

    def sync_done(self, run: SyncRun) -> None:
        if self._progress is not None and run.sync in self._tasks:
            self._progress.remove_task(self._tasks.pop(run.sync))
            if not self._tasks:
                self._progress.stop()
                self._progress = None


def render_plans(result: DiffResult, fmt: str) -> None:
    if fmt == "json":
        print_json(result.as_dict())
        return
    if fmt == "markdown":
        sys.stdout.write(plans_markdown(result) + "\n")
        return
    if not result.plans and not result.errors:
        out.print("No syncs selected.")
    for plan in result.plans:
        _plan_text(plan)
    for sync, message in result.errors.items():
        error(f"{sync}: {message}")


def _plan_text(plan: SyncPlan) -> None:
    head = f"[bold]{plan.sync}[/] ({plan.type} {plan.mode} → {plan.destination}, model {plan.model})"
    counts = f"[green]+{plan.added} added[/]  [yellow]~{plan.changed} changed[/]  [red]-{plan.removed} removed[/]"
    if plan.type == "audience":
        counts = f"[green]+{plan.added} joining[/]  [red]-{plan.removed} leaving[/]"
    out.print(f"{head}\n  {counts}  (destination holds {plan.snapshot_rows})" + ("  [dim]full resync[/]" if plan.full_resync else ""))
    if plan.reset:
        out.print(f"  [yellow]snapshot starts afresh:[/] {plan.reset}; every row is sent")
    if plan.guard_error:
        out.print(f"  [bold red]guard:[/] {plan.guard_error}")
    for kind, rows in plan.sample.items():
        for row in rows:
            key = ", ".join(f"{k}={_fmt(v)}" for k, v in row["key"].items())
            if "changes" in row:
                changes = "; ".join(f"{c}: {_fmt(b)} → {_fmt(a)}" for c, (b, a) in row["changes"].items())
                out.print(f"    [yellow]~[/] {key}  {changes}")
            else:
                sign = {"added": "[green]+[/]", "removed": "[red]-[/]", "changed": "[yellow]~[/]"}[kind]
                values = ", ".join(f"{c}={_fmt(v)}" for c, v in row["values"].items() if c not in row["key"])
                out.print(f"    {sign} {key}{'  ' + values if values else ''}  [dim]({row['action']})[/]")
    if not plan.total:
        out.print("  [dim]in sync: nothing to send[/]")


def plans_markdown(result: DiffResult) -> str:
    lines = ["### retl diff", "", "| sync | type | mode | destination | added | changed | removed |", "|---|---|---|---|---:|---:|---:|"]
    for p in result.plans:
        lines.append(f"| `{p.sync}` | {p.type} | {p.mode} | {p.destination} | {p.added} | {p.changed} | {p.removed} |")
    for p in result.plans:
        if p.guard_error:
            lines += ["", f"> :warning: **{p.sync}**: {p.guard_error}"]
        if not p.sample:
            continue
        lines += ["", f"<details><summary><code>{p.sync}</code> sample</summary>", ""]
        for kind, rows in p.sample.items():
            for row in rows:
                key = ", ".join(f"{k}={v}" for k, v in row["key"].items())
                if "changes" in row:
                    detail = "; ".join(f"`{c}`: {_fmt(b)} → {_fmt(a)}" for c, (b, a) in row["changes"].items())
                else:
                    detail = row["action"]
                lines.append(f"- **{kind}** {key}: {detail}")
        lines += ["", "</details>"]
    for sync, message in result.errors.items():
        lines += ["", f"> :x: **{sync}**: {message}"]
    return "\n".join(lines)


def render_runs_result(result: SyncResult, fmt: str) -> None:
    if fmt == "json":
        print_json(result.as_dict())
        return
    if not result.runs:
        out.print("No syncs selected.")
    for run in result.runs:
        if run.status == "skipped":
            out.print(f"[yellow]{run.status:>7}[/] [bold]{run.sync}[/]  {run.error or 'already running in another process'}")
            continue
        style = {"success": "green", "partial": "yellow"}.get(run.status, "red")
        audience_like = f"+{run.added} ~{run.changed} -{run.removed}"
        line = f"[{style}]{run.status:>7}[/] [bold]{run.sync}[/]  {audience_like}  sent {run.sent}"
        if run.rejected or run.failed:
            line += f"  [yellow]rejected {run.rejected} failed {run.failed}[/] (retried next run)"
        line += f"  [dim]{run.duration_s:.2f}s run {run.run_id}[/]"
        out.print(line)
        if run.error:
            out.print(f"        [red]{run.error}[/]")
        for sample in run.rejected_sample:
            out.print(f"        [dim]{sample['kind']} {sample['key']}: {sample['reason']}[/]")


def render_history(records: list[RunRecord], fmt: str) -> None:
    if fmt == "json":
        print_json({"runs": [r.as_dict() for r in records]})
        return
    if not records:
        out.print("No runs yet.")
        return
    table = Table(show_edge=False, header_style="bold")
    numeric = ("duration", "added", "changed", "removed", "sent", "rejected", "failed")
    for column in ("run", "sync", "started", *numeric, "status", "trigger"):
        table.add_column(column, justify="right" if column in numeric else "left")
    for r in records:
        table.add_row(
            r.run_id, r.sync, r.started_at.strftime("%Y-%m-%d %H:%M:%S"), f"{r.duration_s or 0:.2f}s",
            str(r.added), str(r.changed), str(r.removed), str(r.sent), str(r.rejected), str(r.failed), r.status,
            r.trigger or "manual",
        )
    out.print(table)


def render_run_detail(record: RunRecord, fmt: str) -> None:
    if fmt == "json":
        data = record.as_dict()
        data["errors"] = [e.__dict__ for e in record.errors]
        print_json(data)
        return
    out.print(f"[bold]run {record.run_id}[/] {record.sync}: {record.status}, started {record.started_at:%Y-%m-%d %H:%M:%S}, {record.duration_s or 0:.2f}s")
    out.print(f"  added {record.added}  changed {record.changed}  removed {record.removed}  sent {record.sent}  rejected {record.rejected}  failed {record.failed}")
    if record.error:
        out.print(f"  [red]{record.error}[/]")
    if record.errors:
        table = Table(show_edge=False, header_style="bold")
        for column in ("row", "action", "kind", "reason"):
            table.add_column(column)
        for e in record.errors:
            table.add_row(e.row_key, e.action, e.kind, e.reason)
        out.print(table)
