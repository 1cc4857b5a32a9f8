"""One ``retl diff`` / ``retl sync``: load, build models, diff, plan, deliver, acknowledge.

The flow (DESIGN.md "Data flow"): models are built in the warehouse session; for each sync the
model is computed once, keys are checked, the snapshot is diffed in SQL into a delta table, a
plan is made (guards checked), and - for ``sync`` - the delta is streamed to the destination
in chunks. After each chunk only the rows the destination accepted are applied to the
snapshot, so a crash, a rejected row or a failed request is simply part of the next diff.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reverse_etl import secrets
from reverse_etl.config.syncs import GuardConfig
from reverse_etl.delivery.client import DeliveryClient
from reverse_etl.destinations.base import DeltaChunk, Destination, WriterState
from reverse_etl.diff.engine import Delta, Differ, SyncColumns
from reverse_etl.errors import ConfigError, ConfigErrors, DataError, ModelError, PlanMismatchError, RetlError
from reverse_etl.plan import PlanFile, SyncPlan
from reverse_etl.project import Project, SyncDef
from reverse_etl.results import DiffResult, NullReporter, Reporter, SyncResult, SyncRun
from reverse_etl.sandbox.manager import Sandboxes
from reverse_etl.state import StateStore
from reverse_etl.streaming import DeltaStreamer, frozen_heap
from reverse_etl.warehouse import open_warehouse
from reverse_etl.warehouse.base import WarehouseSession

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    sync: SyncDef
    destination: Destination
    columns: SyncColumns
    delta: Delta
    plan: SyncPlan
    snapshot_table: str


def sync_columns(sync: SyncDef, destination: Destination) -> SyncColumns:
    c = sync.config
    key = c.key_columns
    mapped = [*c.identifiers.values(), *c.fields.values(), *destination.extra_columns(c)]
    others = sorted({m for m in mapped if m not in key})
    # Events are never updated or removed: their snapshot only needs keys and hashes.
    values = [] if c.type == "events" else others
    identity = sorted({v for v in c.identifiers.values() if v not in key})
    return SyncColumns(key=key, values=values, hashed=others, identity=identity)


class Runner:
    """Runs diffs and syncs for a loaded project. One instance per CLI command."""

    def __init__(
        self, project: Project, reporter: Reporter | None = None, should_stop: Callable[[], bool] | None = None
    ) -> None:
        self.project = project
        secrets.register_model(project.target.config)  # keys, tokens, passwords: masked in every output
        self.reporter = reporter or NullReporter()
        # Asked before each chunk; True ends the run there (status "interrupted"), e.g. on SIGTERM.
        self.should_stop = should_stop or (lambda: False)

    @contextmanager
    def _session(self, syncs: list[SyncDef]) -> Iterator[tuple[WarehouseSession, StateStore]]:
        target = self.project.target.config
        warehouse = open_warehouse(target.warehouse, self.project.root, target.state)
        with warehouse.session() as session:
            state = session.open_state(self.project.target.config.state, self.project.root)
            needed = self.project.graph.upstream({s.config.model for s in syncs})
            session.build([self.project.models[n] for n in needed])
            self._check_columns(session, syncs)
            yield session, state

    def _check_columns(self, session: WarehouseSession, syncs: list[SyncDef]) -> None:
        errors: list[ConfigError] = []
        cache: dict[str, dict[str, str]] = {}
        for sync in syncs:
            c = sync.config
            model_cols = cache.setdefault(c.model, session.columns(c.model))
            dest = self.project.destination(sync)
            wanted: list[tuple[str, str]] = [("primary_key", k) for k in c.key_columns]
            wanted += [(f"identifiers.{k}", v) for k, v in c.identifiers.items()]
            wanted += [(f"fields.{k}", v) for k, v in c.fields.items()]
            wanted += [("event", v) for v in dest.extra_columns(c)]
            for where, column in wanted:
                if column not in model_cols:
                    errors.append(ConfigError(
                        f"sync {c.name!r}: {where} names column {column!r}, which model {c.model!r} does not produce "
                        f"(its columns: {', '.join(model_cols)})",
                        file=sync.where,
                    ))
            bad = [m for m in model_cols if m.startswith("__retl")]
            if bad:
                errors.append(ConfigError(f"model {c.model!r}: column names starting with __retl are reserved: {bad}", file=sync.where))
        if errors:
            raise errors[0] if len(errors) == 1 else ConfigErrors(errors)

    def _prepare(
        self, session: WarehouseSession, state: StateStore, differ: Differ, sync: SyncDef, *, full_resync: bool, limit: int,
        preview: bool,
    ) -> Prepared:
        """Diff one sync and plan it."""
        c = sync.config
        destination = self.project.destination(sync)
        columns = sync_columns(sync, destination)
        model_types = session.columns(c.model)
        model_table = session.relation(c.model, columns.all)
        snapshot = state.ensure_snapshot(
            c.name,
            {k: model_types[k] for k in columns.key},
            {v: model_types[v] for v in columns.values},
            columns.hashed,
            destination_key=destination.identity_key(c),
            preview=preview,
            model_table=model_table,
        )
        snapshot_rows = state.snapshot_count(snapshot)
        delta = differ.diff(
            model_table=model_table, snapshot_table=snapshot.table, columns=columns,
            sync_type=c.type, mode=c.effective_mode, full_resync=full_resync, model=c.model,
        )
        guard_error = _guard(c.guard, delta, snapshot_rows)
        plan = SyncPlan(
            sync=c.name, type=c.type, mode=c.effective_mode, destination=c.destination, model=c.model,
            added=delta.added, changed=delta.changed, removed=delta.removed, snapshot_rows=snapshot_rows,
            fingerprint=delta.fingerprint, full_resync=full_resync, guard_error=guard_error, reset=snapshot.reset,
            sample=session.sample(delta, snapshot.table, limit),
        )
        return Prepared(sync, destination, columns, delta, plan, snapshot.table)

    # --- diff --------------------------------------------------------------------------
    def diff(self, selectors: list[str] | None = None, *, full_resync: bool = False, limit: int = 5) -> DiffResult:
        syncs = self.project.select(selectors)
        result = DiffResult(plans=[])
        with self._session(syncs) as (session, state):
            differ = session.differ()
            for sync in syncs:
                try:
                    prepared = self._prepare(session, state, differ, sync, full_resync=full_resync, limit=limit, preview=True)
                except (DataError, ModelError) as exc:
                    result.errors[sync.name] = str(exc)
                    continue
                result.plans.append(prepared.plan)
                self.reporter.plan_ready(prepared.plan)
        return result

    # --- sync --------------------------------------------------------------------------
    def sync(
        self,
        selectors: list[str] | None = None,
        *,
        full_resync: bool = False,
        force: bool = False,
        plan_file: PlanFile | None = None,
        trigger: str | None = None,
    ) -> SyncResult:
        if plan_file is not None:
            selectors = [p.sync for p in plan_file.plans]
        syncs = self.project.select(selectors)
        warm_up({type(d): d for d in (self.project.destination(s) for s in syncs)}.values())
        with self._session(syncs) as (session, state), Sandboxes(self.project.root) as sandboxes:
            differ = session.differ()
            return self._sync_all(session, state, differ, sandboxes, syncs, full_resync, force, plan_file, trigger)

    def _sync_all(
        self, session: WarehouseSession, state: StateStore, differ: Differ, sandboxes: Sandboxes, syncs: list[SyncDef],
        full_resync: bool, force: bool, plan_file: PlanFile | None, trigger: str | None,
    ) -> SyncResult:
        runs: list[SyncRun] = []
        prepared: list[Prepared | SyncRun] = []
        for sync in syncs:
            try:
                p = self._prepare(session, state, differ, sync, full_resync=full_resync, limit=0, preview=False)
            except (DataError, ModelError) as exc:
                prepared.append(self._record_failure(state, sync, "error", str(exc), full_resync, trigger))
                continue
            prepared.append(p)
        if plan_file is not None:
            _check_plan(plan_file, [p.plan for p in prepared if isinstance(p, Prepared)])
        for item in prepared:
            if isinstance(item, SyncRun):
                runs.append(item)
                self.reporter.sync_done(item)
                continue
            if item.plan.guard_error and not force:
                run = self._record_failure(state, item.sync, "guard", item.plan.guard_error, full_resync, trigger)
            else:
                run = self._deliver(session, state, differ, item, sandboxes, full_resync, trigger)
            runs.append(run)
            self.reporter.sync_done(run)
        return SyncResult(runs)

    def _record_failure(self, state: StateStore, sync: SyncDef, status: str, error: str, full_resync: bool, trigger: str | None) -> SyncRun:
        record = state.start_run(sync.name, full_resync=full_resync, trigger=trigger)
        record.status, record.error = status, error
        state.finish_run(record, keep=self.project.target.config.state.keep_runs)
        return SyncRun(sync=sync.name, status=status, run_id=record.run_id, error=error, duration_s=record.duration_s or 0.0)

    def _deliver(
        self, session: WarehouseSession, state: StateStore, differ: Differ, item: Prepared,
        sandboxes: Sandboxes, full_resync: bool, trigger: str | None,
    ) -> SyncRun:
        started = time.monotonic()
        record = state.start_run(item.sync.name, full_resync=full_resync, trigger=trigger)
        record.added, record.changed, record.removed = item.plan.added, item.plan.changed, item.plan.removed
        run = SyncRun(sync=item.sync.name, status="success", run_id=record.run_id,
                      added=item.plan.added, changed=item.plan.changed, removed=item.plan.removed)
        try:
            if item.delta.rows:
                asyncio.run(self._send(session, state, differ, item, sandboxes, run, record))
        except RetlError as exc:
            run.status, run.error = "error", str(exc)
        except Exception as exc:  # keep the run record honest even on a bug, then re-raise
            run.status, run.error = "error", f"{type(exc).__name__}: {exc}"
            self._close_record(state, record, run, started)
            raise
        except BaseException:  # Ctrl-C: what was acknowledged stays, the record says so
            run.status, run.error = "interrupted", "interrupted; the next run sends the rest"
            self._close_record(state, record, run, started)
            raise
        if run.status == "success" and (run.failed or run.rejected):
            run.status = "partial"
        self._close_record(state, record, run, started)
        return run

    @staticmethod
    def _redacted(run: SyncRun) -> SyncRun:
        """No secret in what a run records or reports (an error may quote a request or an answer)."""
        if run.error:
            run.error = secrets.redact(run.error)
        return run

    def _close_record(self, state: StateStore, record: Any, run: SyncRun, started: float) -> None:
        self._redacted(run)
        run.duration_s = time.monotonic() - started
        record.status, record.error = run.status, run.error
        record.sent, record.failed, record.rejected = run.sent, run.failed, run.rejected
        state.finish_run(record, keep=self.project.target.config.state.keep_runs)

    async def _send(
        self, session: WarehouseSession, state: StateStore, differ: Differ, item: Prepared,
        sandboxes: Sandboxes, run: SyncRun, record: Any,
    ) -> None:
        """Stream the delta through the destination's writer (see :mod:`reverse_etl.streaming`)."""
        dest = item.destination
        base_url = None
        if dest.config.sandbox and not dest.config.base_url:
            base_url = dest.use_sandbox(sandboxes.url(dest.name, dest.type_name, self.project.sandbox_options(dest.name)))
        client = DeliveryClient(dest.delivery_settings(base_url))
        try:
            writer = dest.writer(item.sync.config, client)
            writer.state = StoreWriterState(state, item.snapshot_table)
            await writer.prepare()

            def fetch(lo: int, hi: int) -> DeltaChunk:
                # Rows about to be sent are first recorded as maybe held (Differ.hold): if no answer
                # comes, a later removal of them from the model is still sent.
                differ.hold(item.delta, item.snapshot_table, lo, hi)
                return self._rows(session, item, lo, hi, columnar=writer.COLUMNAR)

            streamer = DeltaStreamer(
                writer=writer, delta=item.delta, columns=item.columns, chunk_rows=checkpoint_rows(dest),
                max_chunk_rows=None if dest.config.checkpoint_rows else MAX_CHECKPOINT_ROWS,
                fetch=fetch,
                ack=lambda lo, hi, not_accepted, rejected: differ.ack(
                    item.delta, item.snapshot_table, lo, hi, not_accepted, rejected
                ),
                record_errors=lambda errors: state.add_row_errors(record, errors),
                run=run, reporter=self.reporter, should_stop=self.should_stop,
                # A lease on the state taken over while this process stalled: stop before sending
                # another chunk, so two processes never send the same rows.
                before_send=session.check_state_lock,
                checkpoint=state.checkpoint,
            )
            with frozen_heap():
                await streamer.stream()
            await writer.finish()
        finally:
            await client.aclose()

    def _rows(self, session: WarehouseSession, item: Prepared, lo: int, hi: int, *, columnar: bool = False) -> DeltaChunk:
        """Delta rows ``lo..hi``: as Arrow for a columnar writer, else as rows."""
        names = item.columns.all
        if columnar:
            return DeltaChunk(names, table=session.fetch_delta_arrow(item.delta, lo, hi))
        return DeltaChunk.from_tuples(names, session.fetch_delta(item.delta, lo, hi))


def warm_up(destinations: Iterable[Destination]) -> None:
    """Run each destination's :meth:`~Destination.warm_up` on a daemon thread, while the
    warehouse session opens and the syncs are diffed."""
    chosen = list(destinations)

    def run() -> None:
        for destination in chosen:
            try:
                destination.warm_up()
            except Exception:  # only a head start: the sync meets (and reports) the same failure itself
                log.debug("warm-up of %s failed", destination.name, exc_info=True)

    threading.Thread(target=run, name="retl-warm-up", daemon=True).start()


MAX_CHECKPOINT_ROWS = 50_000  # the largest adaptive chunk: at most one is resent after a crash


def checkpoint_rows(destination: Destination) -> int:
    """Rows per chunk (snapshot commit): the profile's ``checkpoint_rows``, else the first chunk of
    an adaptive run: 32 batches, or one per connection if there are more. Sending starts early,
    and at Braze's pace a chunk still takes longer to send than the next one takes to fetch and
    stage and the last one to commit (~10 ms each), so the connections do not wait on the
    database; later chunks grow."""
    config = destination.config
    return config.checkpoint_rows or max(500, destination.batch_size * max(config.concurrency, 32))


# --- Writer.state: what a writer may keep and read in the state store ---------------------
class StoreWriterState(WriterState):
    """:class:`WriterState` over the state store: values in ``_retl_meta`` (keys prefixed
    ``writer:``), the snapshot streamed through its own cursor so other queries may interleave."""

    PREFIX = "writer:"

    def __init__(self, state: StateStore, snapshot_table: str) -> None:
        self._state = state
        self._snapshot_table = snapshot_table

    def get(self, key: str) -> str | None:
        return self._state.meta_get(self.PREFIX + key)

    def put(self, key: str, value: str | None) -> None:
        self._state.meta_put(self.PREFIX + key, value)

    def snapshot(self, columns: Sequence[str]) -> Iterator[tuple[Any, ...]]:
        return self._state.iter_snapshot(self._snapshot_table, columns)


def _guard(guard: GuardConfig | None, delta: Delta, snapshot_rows: int) -> str | None:
    if guard is None:
        return None
    limit = GuardConfig.threshold(guard.max_removals, snapshot_rows)
    if limit is not None and delta.removed > limit:
        return (f"guard max_removals ({guard.max_removals}) tripped: the plan removes {delta.removed} of "
                f"{snapshot_rows} rows; nothing was sent. Check the model, then rerun with --force to apply it")
    limit = GuardConfig.threshold(guard.max_changes, snapshot_rows)
    total = delta.added + delta.changed + delta.removed
    if limit is not None and snapshot_rows and total > limit:
        return (f"guard max_changes ({guard.max_changes}) tripped: the plan touches {total} rows against a snapshot "
                f"of {snapshot_rows}; nothing was sent. Rerun with --force to apply it")
    return None


def _check_plan(saved: PlanFile, fresh: list[SyncPlan]) -> None:
    now = {p.sync: p for p in fresh}
    problems = []
    for plan in saved.plans:
        current = now.get(plan.sync)
        if current is None:
            problems.append(f"{plan.sync}: could not be planned now")
        elif current.fingerprint != plan.fingerprint:
            problems.append(
                f"{plan.sync}: the data moved since the plan was made "
                f"(planned +{plan.added} ~{plan.changed} -{plan.removed}, now +{current.added} ~{current.changed} -{current.removed})"
            )
    if problems:
        raise PlanMismatchError("the saved plan no longer matches: " + "; ".join(problems),
                                hint="run `retl diff --out plan.json` again, review it, then apply it")


def load_project(project_dir: str | Path, *, target: str | None, profiles: str | Path | None, variables: dict[str, Any] | None = None) -> Project:
    return Project.load(project_dir, target=target, profiles=profiles, variables=variables)
