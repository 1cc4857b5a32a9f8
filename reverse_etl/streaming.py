"""Stream one sync's delta through its writer: fetch, stage, send, acknowledge, chunk by chunk.

Per chunk of ``checkpoint_rows`` delta rows::

    fetch (warehouse) -> stage (payloads, validation; CPU) -> send (HTTP) -> ack (snapshot + row errors)

Fetch, stage and ack run on one worker thread (the database connection is used by one thread
at a time, and DuckDB / Arrow / the JSON encoder release the GIL while they work); send runs
on the event loop. For a ``PIPELINED`` writer the worker fetches and stages chunk k+1, then
commits chunk k-1, while chunk k is on the wire, so neither payloads nor snapshot commits hold
up the HTTP pipe. With adaptive chunks, chunks answered while a commit still runs (the small
first ones are sent faster than a commit takes) wait and are committed together by the next
one, so the fetch of the next chunk never queues behind two commits. Other writers (those that
use ``Writer.state`` while sending) run the steps one after another.

The snapshot rule is unchanged: a chunk's accepted rows enter the snapshot in one transaction
after the chunk's requests are answered. A process killed mid-run leaves out at most the chunk
on the wire, the commit in progress and the chunks answered while it runs (fewer than
``max_chunk_rows`` rows); the next run's diff sends them again. A stop request
(SIGTERM) is checked before each chunk is sent: the run ends there with everything it sent
acknowledged. So does a destination that cannot be connected to through every retry
(``DeliveryClient.unreachable``): after the chunk that found out, instead of every remaining
request trying on its own.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson

from reverse_etl import secrets
from reverse_etl.destinations.base import ChunkResult, DeltaChunk, Writer
from reverse_etl.destinations.chunk import ACTION
from reverse_etl.diff.engine import Delta, SyncColumns
from reverse_etl.errors import AuthError, UnreachableError
from reverse_etl.results import Reporter, SyncRun
from reverse_etl.state import RowError

NO_ANSWER = "no answer from the destination for this row"
CHECKPOINT_SHARE = 8  # the state store is checkpointed once this share of the rows is left to commit
SAMPLE = 5  # rejected rows shown in a run's summary


@contextmanager
def frozen_heap() -> Iterator[None]:
    """While rows are sent, Python's cyclic garbage collector leaves alone the objects that
    existed before (modules, config, the warehouse session). A full collection of them took
    ~40 ms here: a stall of every connection that a paced 1,000 requests/s cannot make up.
    What the run allocates is still collected, and the heap is handed back afterwards."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@dataclass(frozen=True)
class Answered:
    """A chunk the destination answered, waiting for its snapshot commit."""

    lo: int
    hi: int
    chunk: DeltaChunk
    outcome: ChunkResult


@dataclass
class Acked:
    """What one chunk's acknowledgement added to the run's counts."""

    accepted: int
    errors: list[RowError]


class DeltaStreamer:
    """Sends one sync's delta in chunks; updates ``run`` (sent / rejected / failed) as chunks land.

    Chunks start at ``chunk_rows`` rows and, unless ``max_chunk_rows`` is None, adapt to how fast
    the destination takes them (:meth:`_grow`). ``fetch(lo, hi)`` returns the chunk of delta rows ``lo..hi``; ``ack(lo, hi, not_accepted, rejected)``
    applies the chunk to the snapshot; ``record_errors(errors)`` keeps row errors in the run
    record. All three are called on the worker thread.
    """

    def __init__(
        self, *, writer: Writer, delta: Delta, columns: SyncColumns, chunk_rows: int, max_chunk_rows: int | None,
        fetch: Callable[[int, int], DeltaChunk], ack: Callable[[int, int, list[int], list[int]], Any],
        record_errors: Callable[[list[RowError]], None], run: SyncRun, reporter: Reporter,
        should_stop: Callable[[], bool], before_send: Callable[[], None] = lambda: None,
        checkpoint: Callable[[], None] = lambda: None,
    ) -> None:
        self.writer = writer
        self.delta = delta
        self.key = columns.key
        self.chunk_rows = chunk_rows
        self.max_chunk_rows = max_chunk_rows  # None: every chunk has chunk_rows rows
        self.fetch = fetch
        self.ack = ack
        self.record_errors = record_errors
        self.run = run
        self.reporter = reporter
        self.should_stop = should_stop
        self.before_send = before_send  # raises to end the run before a chunk is sent
        self.checkpoint = checkpoint  # the state store's (see _acknowledge)
        self._checkpointed = False

    def _load(self, lo: int, hi: int) -> tuple[DeltaChunk, Any]:
        chunk = self.fetch(lo, hi)
        return chunk, self.writer.stage(chunk)

    def _acknowledge(self, answered: list[Answered]) -> Acked:
        """Commit consecutive answered chunks to the snapshot in one transaction."""
        not_accepted: list[int] = []
        rejected: list[int] = []
        errors: list[RowError] = []
        rows = 0
        for item in answered:
            accepted = set(item.outcome.accepted)
            missing = [seq for seq in item.chunk.seqs if seq not in accepted]
            # Rejected rows are not held by the destination, unless an earlier attempt of their
            # request may have applied them; rows without an answer may be held too (Differ.hold).
            conclusive = item.outcome.conclusive_rejections
            not_accepted += missing
            rejected += [seq for seq in missing if seq in conclusive]
            errors += self._row_errors(item.chunk, missing, item.outcome)
            rows += len(item.chunk)
        hi = answered[-1].hi
        self.ack(answered[0].lo, hi, not_accepted, rejected)
        self.record_errors(errors)
        if not self._checkpointed and 0 < self.delta.rows - hi <= self.delta.rows // CHECKPOINT_SHARE:
            # Once, while the last share of the rows is still being sent: what the state store
            # then writes on close is that share, not everything since its last checkpoint.
            self._checkpointed = True
            self.checkpoint()
        return Acked(rows - len(not_accepted), errors)

    def _release(self, lo: int, hi: int, chunk: DeltaChunk) -> None:
        """A chunk fetched (and its added rows held as maybe held) but never sent, because the run
        stopped first: nothing of it reached the destination, so its placeholders go again. Were
        they kept, a row never sent that then left the model would get a removal, and the
        destination a profile it never had."""
        if self.delta.holds:
            seqs = chunk.seqs
            self.ack(lo, hi, seqs, seqs)

    def _row_errors(self, chunk: DeltaChunk, seqs: list[int], outcome: ChunkResult) -> list[RowError]:
        if not seqs:
            return []
        values = chunk.values_of(seqs, [*self.key, ACTION])
        out: list[RowError] = []
        for seq in seqs:
            row = values.get(seq, {})
            if seq in outcome.rejected:
                kind, reason = "rejected", outcome.rejected[seq]
            else:
                kind, reason = "failed", outcome.failed.get(seq, NO_ANSWER)
            key: Any = row.get(self.key[0]) if len(self.key) == 1 else [row.get(c) for c in self.key]
            text = key if isinstance(key, str) else orjson.dumps(key, default=str).decode()
            out.append(RowError(row_key=text, action=str(row.get(ACTION) or ""), kind=kind,
                                reason=secrets.redact(reason)))  # a destination may echo a key back
        return out

    def _count(self, acked: Acked) -> None:
        run = self.run
        run.sent += acked.accepted
        run.rejected += sum(1 for e in acked.errors if e.kind == "rejected")
        run.failed += sum(1 for e in acked.errors if e.kind == "failed")
        for e in acked.errors[: max(0, SAMPLE - len(run.rejected_sample))]:
            run.rejected_sample.append({"key": e.row_key, "reason": e.reason, "kind": e.kind})

    def _grow(self, size: int, seconds: float) -> int:
        """The next chunk's size: doubled while a chunk is sent in under a quarter of a second
        (a snapshot commit per chunk then costs little against the sending), halved above one
        second (a crash resends at most the chunk on the wire and the one being committed), never
        outside [chunk_rows, max_chunk_rows]."""
        if self.max_chunk_rows is None:
            return size
        if seconds < 0.25:
            return min(self.max_chunk_rows, size * 2)
        if seconds > 1.0:
            return max(self.chunk_rows, size // 2)
        return size

    async def stream(self) -> None:
        """Send every chunk. Progress is reported as soon as a chunk is answered, and the stop
        request is checked before the next one is sent, so a stop takes effect at that boundary."""
        total = self.delta.rows
        size = self.chunk_rows

        def span(lo: int) -> tuple[int, int] | None:
            if lo > total:
                return None
            rows = size
            if self.max_chunk_rows is not None:  # taper: the commit no sending overlaps is a small one
                rows = min(size, max(self.chunk_rows, (total - lo + 1) // 2))
            return lo, min(total, lo + rows - 1)

        current = span(1)
        if current is None:
            return
        loop = asyncio.get_running_loop()
        pipelined = self.writer.PIPELINED
        # Adaptive chunks: chunks answered while a commit runs wait for the next one, together,
        # so commits never hold up the fetch of the chunk to send next (small first chunks are
        # sent faster than one commit each takes). A fixed checkpoint_rows: a commit per chunk.
        coalesce = pipelined and self.max_chunk_rows is not None
        answered: list[Answered] = []  # answered, not yet committed
        acking: asyncio.Future[Acked] | None = None
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="retl-db") as worker:

            async def commit(*, wait: bool) -> None:
                """Commit the answered chunks; while a commit runs, unless ``wait``, they wait for it
                (up to ``max_chunk_rows`` rows of them)."""
                nonlocal acking, answered
                if acking is not None:
                    waiting = sum(a.hi - a.lo + 1 for a in answered)
                    if not wait and not acking.done() and waiting < (self.max_chunk_rows or 0):
                        return
                    done, acking = acking, None
                    self._count(await done)
                if answered:
                    acking, answered = loop.run_in_executor(worker, self._acknowledge, answered), []

            async def drain() -> None:
                """Commit every answered chunk and wait until it is committed."""
                nonlocal acking
                await commit(wait=True)
                if acking is not None:
                    done, acking = acking, None
                    self._count(await done)

            loading: asyncio.Future[tuple[DeltaChunk, Any]] | None = loop.run_in_executor(worker, self._load, *current)
            loaded = current  # the span ``loading`` fetches (and holds)
            try:
                while current is not None:
                    lo, hi = current
                    if self.should_stop():
                        self.run.status = "interrupted"
                        self.run.error = f"stopped on request after {lo - 1} of {total} rows; the next run sends the rest"
                        break
                    self.before_send()
                    assert loading is not None
                    chunk, staged = await loading
                    loading = None
                    following = span(hi + 1)
                    if following and pipelined:  # fetched and staged while this chunk is on the wire
                        loading, loaded = loop.run_in_executor(worker, self._load, *following), following
                    if answered:  # the previous chunk's commit runs while this one is sent, after that fetch
                        await commit(wait=not coalesce)
                    started = time.monotonic()
                    try:
                        outcome = await self.writer.send(staged)
                    except AuthError as exc:
                        # The run stops; what the chunk's other requests did is acknowledged first.
                        if isinstance(exc.partial, ChunkResult):
                            answered.append(Answered(lo, hi, chunk, exc.partial))
                        raise
                    size = self._grow(size, time.monotonic() - started)
                    self.reporter.progress(self.run.sync, hi, total)
                    answered.append(Answered(lo, hi, chunk, outcome))
                    if (unreachable := self.writer.client.unreachable) is not None:
                        raise UnreachableError(
                            f"the destination cannot be reached, so the run stopped after {hi} of {total} rows "
                            f"(the next run sends what was not delivered): {unreachable}",
                            hint="check the destination's base_url / region and the network; the run can be repeated",
                        )
                    if not pipelined:  # the writer may use the state store while it sends
                        await drain()
                        following = span(hi + 1)
                        if following:
                            loading, loaded = loop.run_in_executor(worker, self._load, *following), following
                    current = following
            finally:
                # What was answered is acknowledged even when the run ends on an error, and the
                # connection must be idle before anyone else uses it.
                if loading is not None:
                    await asyncio.wait([loading])
                    if not loading.cancelled() and loading.exception() is None:  # a fetch error after a send error is secondary
                        await loop.run_in_executor(worker, self._release, *loaded, loading.result()[0])
                await drain()
