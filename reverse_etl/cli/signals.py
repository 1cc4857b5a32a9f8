"""Graceful stop for ``retl sync``: SIGTERM / Ctrl-C end the run after its current chunk.

Every chunk is acknowledged into the snapshot as soon as the destination answers it, so a run
stopped between chunks has recorded everything it delivered: the next run sends exactly the
rest. Without this, SIGTERM (what Kubernetes, systemd and CI runners send first) would kill the
process mid-chunk: still safe, but the chunk in flight is sent again and the run record is only
closed ("aborted") by the next run. A second signal exits at once, as the scheduler does.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from reverse_etl.cli import console


@contextmanager
def stop_on_signal(stop: threading.Event) -> Iterator[threading.Event]:
    """Set ``stop`` on the first SIGTERM or SIGINT; raise KeyboardInterrupt on the second."""
    if threading.current_thread() is not threading.main_thread():  # signals reach only the main thread
        yield stop
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handle(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        console.err.print(
            f"[yellow]{signal.Signals(signum).name}:[/] stopping after the current chunk; "
            "what was delivered is recorded and the next run sends the rest (signal again to exit now)"
        )

    for sig in previous:
        signal.signal(sig, handle)
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
