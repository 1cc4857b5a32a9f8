"""The destination conformance suite: what every destination must do against its strict emulator.

A destination's suite subclasses :class:`DestinationConformance` (as ``Test<Name>Conformance``)
and fills in the hooks: how to serve its emulator, the destination's profile entry, a sync of
each kind (records / audience / events) over a generic model, and how to read back what the
emulator holds as ``{key: values}``. Every test then drives real ``retl`` runs over real HTTP
and asserts, whatever went wrong on the way:

- the emulator's final state equals the model (for the rows the mode sends);
- nothing acknowledged is sent again: a rerun sends exactly the rows not yet acknowledged,
  and a run after convergence sends nothing.

Model rows are ``(key, user, value, ts)``: ``key`` the primary key, ``user`` an identifier,
``value`` a number, ``ts`` a timestamp. Each destination maps them onto its API's shapes.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import pytest

import reverse_etl
from reverse_etl.results import SyncRun
from reverse_etl.sandbox import Faults, SandboxServer
from reverse_etl.sandbox.base import Emulator
from reverse_etl.streaming import Answered, DeltaStreamer
from tests.helpers import write_project

Row = tuple[str, str, float, str]
COLUMNS = ["key", "user_id", "value", "ts"]
DEST = "dest"


def rows(n: int, version: int = 1) -> list[Row]:
    """``n`` model rows; ``version`` changes every value (a changed model for the same keys)."""
    return [(f"k{i:04d}", f"u{i:04d}", float(i * version), f"2026-01-{1 + i % 28:02d} 10:{i % 60:02d}:00") for i in range(n)]


def model_sql(data: list[Row]) -> str:
    body = ",\n  ".join(f"('{k}', '{u}', {v!r}, TIMESTAMP '{t}')" for k, u, v, t in data)
    return f"SELECT * FROM (VALUES\n  {body}\n) AS t({', '.join(COLUMNS)})"


def crash_after_first_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    """The process dies (an exception) after the first chunk is acknowledged, just before the
    second chunk's acknowledgement commits: later chunks may be on the wire, none is acknowledged."""
    acknowledge = DeltaStreamer._acknowledge

    def dying(self: DeltaStreamer, answered: list[Answered]) -> Any:
        if answered[0].lo > 1:
            raise RuntimeError(f"simulated crash before acknowledging rows {answered[0].lo}..")
        return acknowledge(self, answered)

    monkeypatch.setattr(DeltaStreamer, "_acknowledge", dying)


class DestinationConformance(ABC):
    """Subclass as ``Test<Name>Conformance`` and implement the hooks below."""

    kinds: ClassVar[tuple[str, ...]] = ("records", "audience", "events")
    batch_kind: ClassVar[str] = "records"  # the kind whose requests carry batch_size rows each
    batch_path: ClassVar[str] = ""  # the path those requests go to (POST)
    batch_method: ClassVar[str] = "POST"
    # per-row rejections that leave some rows of 30 rejected (APIs that isolate a refused batch's
    # rows by resending them need a higher rate than APIs that answer per row)
    reject_faults: ClassVar[Faults] = Faults(reject_rate=0.2, seed=5)

    # --- hooks ---------------------------------------------------------------------------
    @abstractmethod
    def make_emulator(self, faults: Faults) -> Emulator:
        """A fresh emulator with these faults (and whatever setup the syncs need)."""

    @abstractmethod
    def destination(self, url: str) -> dict[str, Any]:
        """The profile entry of the destination, pointing at the emulator served at ``url``."""

    @abstractmethod
    def sync(self, kind: str) -> dict[str, Any]:
        """A sync of ``kind`` over model ``rows`` (columns key, user_id, value, ts) to ``dest``."""

    @abstractmethod
    def held(self, emulator: Emulator, kind: str) -> dict[str, Any]:
        """What the emulator holds for a sync of ``kind``, as ``{key: values}``."""

    @abstractmethod
    def expected(self, kind: str, data: list[Row]) -> dict[str, Any]:
        """What it should hold once the model ``data`` is synced, in :meth:`held`'s shape."""

    # --- machinery -----------------------------------------------------------------------
    @contextmanager
    def served(self, faults: Faults | None = None) -> Iterator[tuple[Emulator, str]]:
        emulator = self.make_emulator(faults or Faults())
        with SandboxServer(emulator) as server:
            yield emulator, server.url

    def project(self, root: Path, url: str, kind: str, data: list[Row], **limits: Any) -> Path:
        dest = {**self.destination(url), "max_retries": 8, "concurrency": 2, **limits}
        return write_project(root, models={"rows": model_sql(data)}, syncs={"suite": [self.sync(kind)]},
                             destinations={DEST: dest})

    @staticmethod
    def run(root: Path, **options: Any) -> SyncRun:
        result = reverse_etl.sync(root, **options)
        assert len(result.runs) == 1, result.as_dict()
        return result.runs[0]

    def converged(self, root: Path, emulator: Emulator, kind: str, data: list[Row]) -> None:
        """The emulator holds the model, and one more run has nothing to send."""
        assert self.held(emulator, kind) == self.expected(kind, data)
        again = self.run(root)
        assert (again.status, again.sent, again.added, again.changed, again.removed) == ("success", 0, 0, 0, 0), again

    def faults_off(self, emulator: Emulator) -> None:
        emulator.faults = Faults()

    # --- the suite -----------------------------------------------------------------------
    def test_batching(self, tmp_path: Path) -> None:
        data = rows(25)
        with self.served() as (emulator, url):
            root = self.project(tmp_path, url, self.batch_kind, data, batch_size=10)
            run = self.run(root)
            assert (run.status, run.sent) == ("success", 25)
            assert emulator.requests_to(self.batch_path, self.batch_method) == 3  # 10 + 10 + 5
            self.converged(root, emulator, self.batch_kind, data)

    def test_changes_are_sent_and_converge(self, tmp_path: Path) -> None:
        for kind in self.kinds:
            first, second = rows(12), rows(15, version=2)[3:]  # 3 keys leave, 3 join, the rest change
            with self.served() as (emulator, url):
                root = self.project(tmp_path / kind, url, kind, first)
                assert self.run(root).status == "success"
                (root / "models" / "rows.sql").write_text(model_sql(second))
                assert self.run(root).status == "success"
                assert self.held(emulator, kind) == self.expected_after(kind, first, second), kind
                assert self.run(root).sent == 0

    def expected_after(self, kind: str, first: list[Row], second: list[Row]) -> dict[str, Any]:
        """What the emulator holds after syncing ``first`` then ``second``: events are sent once per
        key (a changed event row is not sent again), so they accumulate with their first values."""
        if kind == "events":
            return {**self.expected(kind, second), **self.expected(kind, first)}
        return self.expected(kind, second)

    def test_partial_failure_rejected_rows_are_retried_and_accepted_ones_not_resent(self, tmp_path: Path) -> None:
        data = rows(30)
        with self.served(self.reject_faults) as (emulator, url):
            root = self.project(tmp_path, url, self.batch_kind, data, batch_size=5, concurrency=1)
            first = self.run(root)
            missing = first.rejected + first.failed
            assert first.status == "partial" and 0 < missing < 30, first
            assert first.sent + missing == 30
            self.faults_off(emulator)
            second = self.run(root)
            assert (second.status, second.sent) == ("success", missing)  # exactly the rows not acknowledged
            self.converged(root, emulator, self.batch_kind, data)

    @pytest.mark.parametrize("fault", ["throttle", "server_error", "dropped_connection"])
    def test_transient_faults_are_retried_until_everything_lands(self, tmp_path: Path, fault: str) -> None:
        faults = {
            # seed 1 draws a fault on the 1st and 4th request, never three in a row (short backoffs)
            "throttle": Faults(throttle_rate=0.3, seed=1),
            "server_error": Faults(fail_rate=0.3, seed=1),
            "dropped_connection": Faults(drop_rate=0.3, seed=1),
        }[fault]
        data = rows(30)
        with self.served(faults) as (emulator, url):
            root = self.project(tmp_path, url, self.batch_kind, data, batch_size=5)
            started = time.monotonic()
            run = self.run(root)
            assert (run.status, run.sent) == ("success", 30), run
            statuses = {status for _, _, status in emulator.request_log}
            expected_status = {"throttle": 429, "server_error": 503, "dropped_connection": 0}[fault]
            assert expected_status in statuses, f"the fault never happened: {statuses}"
            if fault == "throttle":  # Retry-After (at least 1 s here) was honoured
                assert time.monotonic() - started >= 0.9
            self.faults_off(emulator)
            self.converged(root, emulator, self.batch_kind, data)

    def test_every_kind_lands_through_mixed_faults(self, tmp_path: Path) -> None:
        for kind in self.kinds:
            data = rows(20)
            with self.served(Faults(fail_rate=0.15, drop_rate=0.15, seed=21)) as (emulator, url):
                root = self.project(tmp_path / kind, url, kind, data, batch_size=5)
                run = self.run(root)
                assert (run.status, run.sent) == ("success", 20), (kind, run)
                self.faults_off(emulator)
                self.converged(root, emulator, kind, data)

    def test_timeouts_acknowledge_nothing_and_the_next_run_sends_it_all(self, tmp_path: Path) -> None:
        data = rows(20)
        with self.served(Faults(latency_ms=400)) as (emulator, url):
            root = self.project(tmp_path, url, self.batch_kind, data, batch_size=10, timeout_s=0.1, max_retries=0)
            first = self.run(root)
            assert first.sent == 0, first
            # every row undelivered (retried next run), or the run stopped before sending any
            assert first.failed == 20 or first.status == "error", first
            self.faults_off(emulator)
            time.sleep(0.45)  # requests the client gave up on are still being answered
            second = self.run(root)
            assert (second.status, second.sent) == ("success", 20), second
            self.converged(root, emulator, self.batch_kind, data)

    def test_resume_after_a_crash_sends_exactly_what_was_not_acknowledged(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        data = rows(60)
        with self.served() as (emulator, url):
            root = self.project(tmp_path, url, self.batch_kind, data, batch_size=10, checkpoint_rows=20, concurrency=1)
            with monkeypatch.context() as patch:
                crash_after_first_chunk(patch)
                with pytest.raises(RuntimeError, match="simulated crash"):
                    reverse_etl.sync(root)
            pending = reverse_etl.diff(root).plans[0].added
            assert pending == 40, f"{60 - pending} rows acknowledged; only the first chunk (20) should be"
            resumed = self.run(root)
            assert (resumed.status, resumed.sent) == ("success", pending)
            self.converged(root, emulator, self.batch_kind, data)
