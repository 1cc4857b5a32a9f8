"""The chunk pump: adaptive chunk sizes (the stop request at a chunk boundary: tests/scheduler)."""

from __future__ import annotations

from typing import Any

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


def chunks(s: DeltaStreamer, total: int, size: int) -> list[int]:
    """The sizes of the chunks a run of ``total`` rows is cut into at a steady ``size``."""
    out: list[int] = []
    current = s._span(1, size, total)
    while current is not None:
        lo, hi = current
        out.append(hi - lo + 1)
        current = s._span(hi + 1, size, total)
    return out


def test_adaptive_chunks_taper_off_at_the_end_so_the_last_commit_is_small() -> None:
    sizes = chunks(streamer(50_000), 200_000, 50_000)
    assert sum(sizes) == 200_000
    assert sizes[:3] == [50_000, 50_000, 50_000]  # half of what is left, at most
    assert sizes[-1] <= 600 and sizes == sorted(sizes, reverse=True)  # down to the first chunk's size
    assert chunks(streamer(50_000), 500, 50_000) == [500]  # a delta smaller than one chunk: one chunk


def test_configured_chunks_do_not_taper() -> None:
    assert chunks(streamer(None), 2_000, 600) == [600, 600, 600, 200]
