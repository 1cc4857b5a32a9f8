"""The chunk pump: adaptive chunk sizes (the stop request at a chunk boundary: tests/scheduler)."""

from __future__ import annotations

import asyncio
import itertools
import time
from types import SimpleNamespace
from typing import Any, cast

from reverse_etl.destinations.chunk import ChunkResult, DeltaChunk
from reverse_etl.diff.engine import SyncColumns
from reverse_etl.results import NullReporter, SyncRun
from reverse_etl.streaming import DeltaStreamer


def streamer(max_chunk_rows: int | None) -> DeltaStreamer:
    none: Any = None
    return DeltaStreamer(writer=none, delta=none, columns=SyncColumns(key=["id"], values=[], hashed=[]), chunk_rows=600, max_chunk_rows=max_chunk_rows,
                         fetch=none, ack=none, record_errors=none, run=SyncRun("s", "success"), reporter=NullReporter(),
                         should_stop=lambda: False)


def test_chunks_grow_while_sending_is_quick_and_shrink_when_slow() -> None:
    s = streamer(50_000)
    sizes = [600]
    for _ in range(10):
        sizes.append(s._grow(sizes[-1], 0.1))
    assert sizes[:4] == [600, 1200, 2400, 4800] and sizes[-1] == 50_000  # capped
    assert s._grow(50_000, 0.5) == 50_000  # between a quarter of a second and one: kept
    assert s._grow(50_000, 3.0) == 25_000 and s._grow(700, 3.0) == 600  # never below the first chunk


def test_a_configured_checkpoint_is_fixed() -> None:
    s = streamer(None)
    assert s._grow(600, 0.01) == 600 and s._grow(600, 10) == 600



# --- the pump end to end, with a fake writer and database -----------------------------------------
class FakeWriter:
    """Answers every chunk at once (``send_s`` later), rejecting the seqs in ``reject``."""

    PIPELINED = True
    client = SimpleNamespace(unreachable=None)

    def __init__(self, send_s: float = 0.0, reject: frozenset[int] = frozenset()) -> None:
        self.send_s = send_s
        self.reject = reject
        self.sent: list[tuple[int, int]] = []

    def stage(self, chunk: DeltaChunk) -> DeltaChunk:
        return chunk

    async def send(self, chunk: DeltaChunk) -> ChunkResult:
        await asyncio.sleep(self.send_s)
        seqs = chunk.seqs
        self.sent.append((seqs[0], seqs[-1]))
        result = ChunkResult(accepted=[s for s in seqs if s not in self.reject])
        return result.reject([s for s in seqs if s in self.reject], "no")


def pump(rows: int, *, chunk_rows: int, max_chunk_rows: int | None, writer: FakeWriter, ack_s: float = 0.0,
         log: list[str] | None = None) -> tuple[list[tuple[int, int, list[int], list[int]]], SyncRun]:
    """Stream ``rows`` delta rows; the commits made (``lo, hi, not_accepted, rejected``) and the run."""
    commits: list[tuple[int, int, list[int], list[int]]] = []
    events = log if log is not None else []

    def fetch(lo: int, hi: int) -> DeltaChunk:
        events.append(f"fetch {lo}")
        return DeltaChunk.from_tuples(["id"], [(seq, "upsert", f"k{seq}") for seq in range(lo, hi + 1)])

    def ack(lo: int, hi: int, not_accepted: list[int], rejected: list[int]) -> None:
        events.append(f"commit {lo}-{hi}")
        time.sleep(ack_s)
        commits.append((lo, hi, not_accepted, rejected))

    delta: Any = SimpleNamespace(rows=rows, holds=False)
    run = SyncRun("s", "success")
    streamer_ = DeltaStreamer(writer=cast(Any, writer), delta=delta, columns=SyncColumns(key=["id"], values=[], hashed=[]),
                              chunk_rows=chunk_rows, max_chunk_rows=max_chunk_rows, fetch=fetch, ack=ack,
                              record_errors=lambda errors: None, run=run, reporter=NullReporter(), should_stop=lambda: False)
    asyncio.run(streamer_.stream())
    return commits, run


def test_chunks_answered_while_a_commit_runs_share_the_next_commit() -> None:
    writer = FakeWriter(send_s=0.005)
    commits, run = pump(40_000, chunk_rows=500, max_chunk_rows=4000, writer=writer, ack_s=0.03)
    spans = [(lo, hi) for lo, hi, _, _ in commits]
    assert spans[0] == (1, 500) and spans[-1][1] == 40_000
    assert all(b[0] == a[1] + 1 for a, b in itertools.pairwise(spans))  # contiguous, in order, once each
    assert len(commits) < len(writer.sent)  # several chunks went in one commit
    assert max(hi - lo + 1 for lo, hi in spans) < 2 * 4000  # fewer than max_chunk_rows rows waited for it
    assert run.sent == 40_000


def test_a_fixed_checkpoint_commits_every_chunk_on_its_own() -> None:
    writer = FakeWriter(send_s=0.005)
    commits, run = pump(10_000, chunk_rows=1000, max_chunk_rows=None, writer=writer, ack_s=0.03)
    assert [(lo, hi) for lo, hi, _, _ in commits] == [(lo, lo + 999) for lo in range(1, 10_001, 1000)] == writer.sent
    assert run.sent == 10_000


def test_the_next_chunk_is_fetched_before_the_previous_one_is_committed() -> None:
    log: list[str] = []
    pump(4000, chunk_rows=1000, max_chunk_rows=None, writer=FakeWriter(send_s=0.01), ack_s=0.0, log=log)
    assert log.index("fetch 3001") < log.index("commit 1001-2000")
    assert log.index("fetch 2001") < log.index("commit 1-1000")


def test_adaptive_chunks_taper_off_at_the_end() -> None:
    writer = FakeWriter()
    pump(100_000, chunk_rows=1000, max_chunk_rows=50_000, writer=writer)
    sizes = [hi - lo + 1 for lo, hi in writer.sent]
    assert sum(sizes) == 100_000
    tail = sizes[sizes.index(max(sizes)):]
    assert tail == sorted(tail, reverse=True) and tail[-1] <= 1000  # halving down to the first chunk's size


def test_rejections_in_a_shared_commit_stay_with_their_rows() -> None:
    reject = frozenset({5, 1500, 2999})
    writer = FakeWriter(send_s=0.005, reject=reject)
    commits, run = pump(3000, chunk_rows=250, max_chunk_rows=2000, writer=writer, ack_s=0.03)
    assert len(commits) < len(writer.sent)
    assert sorted(s for _, _, skipped, _ in commits for s in skipped) == sorted(reject)
    assert sorted(s for _, _, _, rejected in commits for s in rejected) == sorted(reject)
    for lo, hi, skipped, _ in commits:
        assert all(lo <= s <= hi for s in skipped)
    assert (run.sent, run.rejected) == (2997, 3)
