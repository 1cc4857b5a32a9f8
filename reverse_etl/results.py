"""What the library API returns; the CLI only formats these."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from reverse_etl.plan import SyncPlan

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_REJECTED = 2


@dataclass
class SyncRun:
    """The outcome of one sync in one ``retl sync``."""

    sync: str
    status: str  # success | partial | error | guard | skipped | interrupted
    run_id: str | None = None
    added: int = 0
    changed: int = 0
    removed: int = 0
    sent: int = 0
    failed: int = 0
    rejected: int = 0
    duration_s: float = 0.0
    error: str | None = None
    rejected_sample: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "sync": self.sync,
            "status": self.status,
            "run_id": self.run_id,
            "added": self.added,
            "changed": self.changed,
            "removed": self.removed,
            "sent": self.sent,
            # DESIGN.md: `failed` counts rows rejected or given up; both are retried next run.
            "failed": self.failed + self.rejected,
            "rejected": self.rejected,
            "undelivered": self.failed,
            "duration_s": round(self.duration_s, 3),
            "error": self.error,
            "rejected_sample": self.rejected_sample,
        }


@dataclass
class DiffResult:
    plans: list[SyncPlan]
    errors: dict[str, str] = field(default_factory=dict)  # sync -> error, for syncs that could not be planned

    @property
    def exit_code(self) -> int:
        return EXIT_ERROR if self.errors else EXIT_OK

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"plans": [p.as_dict() for p in self.plans]}
        if self.errors:
            out["errors"] = [{"sync": s, "error": e} for s, e in self.errors.items()]
        return out


def exit_code_of(runs: list[SyncRun]) -> int:
    """What ``retl sync`` and ``retl schedule`` exit with after ``runs``: 1 if a run failed, was
    stopped by a guard or interrupted (SIGTERM / Ctrl-C: the rest is sent next run); 2 if every
    run completed but some rows were rejected or undelivered; else 0."""
    if any(r.status in ("error", "guard", "interrupted") for r in runs):
        return EXIT_ERROR
    if any(r.failed or r.rejected for r in runs):
        return EXIT_REJECTED
    return EXIT_OK


@dataclass
class SyncResult:
    runs: list[SyncRun]

    @property
    def exit_code(self) -> int:
        return exit_code_of(self.runs)

    def as_dict(self) -> dict[str, Any]:
        return {"runs": [r.as_dict() for r in self.runs]}


class Reporter(Protocol):
    """Where the core reports progress; the CLI draws it, a library caller may ignore it."""

    def plan_ready(self, plan: SyncPlan) -> None: ...

    def progress(self, sync: str, done: int, total: int) -> None: ...

    def sync_done(self, run: SyncRun) -> None: ...


class NullReporter:
    def plan_ready(self, plan: SyncPlan) -> None:
        return None

    def progress(self, sync: str, done: int, total: int) -> None:
        return None

    def sync_done(self, run: SyncRun) -> None:
        return None
