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

