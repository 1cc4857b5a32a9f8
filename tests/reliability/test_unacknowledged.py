"""Rows delivered without an acknowledgement, then removed from the model before the next run.

A request the destination applied but whose answer never arrived (a lost reply, a timeout, a
SIGKILL between send and acknowledgement) must not leave its rows unknown: had they stayed out of
the snapshot, a mirror whose model dropped them in the meantime would never clear them. Added
rows are recorded as maybe held before they are sent (Differ.hold), so their removal is sent.

A row refused on the retry of a request whose first answer was lost stays maybe held too: the
first attempt may have applied it (RawAnswer.doubtful). Deterministic and small.
"""

from __future__ import annotations

import threading
from pathlib import Path

import reverse_etl
from reverse_etl.results import NullReporter
from reverse_etl.sandbox import Faults, SandboxServer
from reverse_etl.sandbox.braze import BrazeEmulator
from reverse_etl.sandbox.http import Request, Response
from tests.helpers import audience_sync, records_sync, set_model, values_sql, write_project

TRAITS = ["user_id", "plan"]


def traits_mirror(root: Path, url: str, rows: list[tuple[str, str]], **options: object) -> None:
    """A project mirroring users' ``plan`` to the Braze emulator at ``url`` (``options``: the
    destination's delivery settings)."""
    write_project(
        root, models={"traits": values_sql(TRAITS, rows)},
        syncs={"traits": [records_sync(mode="mirror", fields={"plan": "plan"})]},
        destinations={"braze": {"type": "braze", "base_url": url, "api_key": "sandbox-key", **options}},
    )


def lose_every_answer(emulator: BrazeEmulator) -> None:
    emulator.faults = Faults(lost_reply_rate=1.0)


def test_in_flight_rows_removed_from_a_records_mirror_are_cleared(tmp_path: Path) -> None:
    emulator = BrazeEmulator()
    with SandboxServer(emulator) as server:
        traits_mirror(tmp_path, server.url, [("u1", "pro"), ("u2", "team")], max_retries=0)
        lose_every_answer(emulator)
        first = reverse_etl.sync(tmp_path).runs[0]
        assert (first.sent, first.failed) == (0, 2)  # applied, but the runner cannot know
        assert emulator.user("u2")["plan"] == "team"  # type: ignore[index]
        emulator.faults = Faults()
        set_model(tmp_path, "traits", values_sql(TRAITS, [("u1", "pro")]))  # u2 leaves the model
        assert reverse_etl.sync(tmp_path).exit_code == 0
        assert "plan" not in emulator.user("u2"), "u2 left the model; Braze must not keep its plan"  # type: ignore[operator]


def test_in_flight_members_removed_from_an_audience_mirror_leave_it(tmp_path: Path) -> None:
    emulator = BrazeEmulator()
    with SandboxServer(emulator) as server:
        write_project(
            tmp_path, models={"members": values_sql(["user_id"], [("u1",), ("u2",)])},
            syncs={"audiences": [audience_sync()]},
            destinations={"braze": {"type": "braze", "base_url": server.url, "api_key": "sandbox-key", "max_retries": 0}},
        )
        lose_every_answer(emulator)
        assert reverse_etl.sync(tmp_path).runs[0].failed == 2
        emulator.faults = Faults()
        set_model(tmp_path, "members", values_sql(["user_id"], [("u1",)]))
        assert reverse_etl.sync(tmp_path).exit_code == 0
        assert emulator.user("u2")["vip"] is False, "u2 left the audience in the model; Braze still has it in"  # type: ignore[index]


def script(emulator: BrazeEmulator, *faults: Faults) -> None:
    """Answer the next requests with these faults, one each, then healthily."""
    steps = iter(faults)
    dispatch = type(emulator).dispatch

    def scripted(request: Request) -> Response | None:
        emulator.faults = next(steps, Faults())
        return dispatch(emulator, request)

    emulator.dispatch = scripted  # type: ignore[method-assign]


def test_a_row_applied_then_rejected_on_the_retry_is_still_removed(tmp_path: Path) -> None:
    emulator = BrazeEmulator()
    with SandboxServer(emulator) as server:
        traits_mirror(tmp_path, server.url, [("u1", "pro")], max_retries=1)
        # the request is applied but its answer lost; the retry is refused (as a create-only API
        # refuses what exists, or a validation that depends on the profile's current state)
        script(emulator, Faults(lost_reply_rate=1.0), Faults(reject_rate=1.0))
        first = reverse_etl.sync(tmp_path).runs[0]
        assert (first.sent, first.rejected) == (0, 1)
        assert emulator.user("u1")["plan"] == "pro"  # type: ignore[index]  # held all the same
        set_model(tmp_path, "traits", values_sql(TRAITS, []))  # u1 leaves the model
        assert reverse_etl.sync(tmp_path).exit_code == 0
        assert "plan" not in emulator.user("u1"), "u1 left the model; Braze must not keep its plan"  # type: ignore[operator]


class StopAfterFirstChunk(NullReporter):
    """Asks the run to stop once its first chunk is answered, as SIGTERM would."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop

    def progress(self, sync: str, done: int, total: int) -> None:
        self.stop.set()


def test_rows_held_for_a_chunk_never_sent_get_no_removal(tmp_path: Path) -> None:
    """The next chunk is fetched (and its rows held) while one is on the wire; if the run stops
    there, that chunk never leaves: its rows must not count as maybe held, or their removal would
    create profiles in Braze that the sync never sent."""
    rows = [(f"u{i}", "pro") for i in range(1, 7)]
    emulator = BrazeEmulator()
    with SandboxServer(emulator) as server:
        traits_mirror(tmp_path, server.url, rows, batch_size=1, concurrency=1, checkpoint_rows=2)
        stop = threading.Event()
        first = reverse_etl.sync(tmp_path, stop=stop, reporter=StopAfterFirstChunk(stop)).runs[0]
        assert (first.status, first.sent) == ("interrupted", 2)
        assert [uid for uid, _ in rows if emulator.user(uid)] == ["u1", "u2"]
        set_model(tmp_path, "traits", values_sql(TRAITS, rows[:2]))  # u3..u6 leave before they were sent
        second = reverse_etl.sync(tmp_path).runs[0]
        assert (second.status, second.removed, second.sent) == ("success", 0, 0)
        assert [uid for uid, _ in rows if emulator.user(uid)] == ["u1", "u2"], "profiles created by removals of rows never sent"


def test_a_key_revoked_mid_chunk_keeps_what_was_delivered_and_holds_nothing_refused(tmp_path: Path) -> None:
    """The API key stops working in the middle of a chunk: the run stops (401), but the chunk's
    requests answered before it are acknowledged, and the rows refused unread are not left as
    maybe held (a removal for them would create profiles Braze never had)."""
    rows = [(f"u{i}", "pro") for i in range(1, 7)]
    emulator = BrazeEmulator()
    dispatch = type(emulator).dispatch

    def revoke_after_two(request: Request) -> Response | None:
        if emulator.requests_to("/users/track") >= 2:
            emulator.api_key = "revoked"
        return dispatch(emulator, request)

    emulator.dispatch = revoke_after_two  # type: ignore[method-assign]
    with SandboxServer(emulator) as server:
        traits_mirror(tmp_path, server.url, rows, batch_size=1, concurrency=1, checkpoint_rows=4)
        first = reverse_etl.sync(tmp_path).runs[0]
        assert first.status == "error" and "401" in (first.error or "")
        assert (first.sent, first.failed) == (2, 2)  # u1, u2 delivered; u3, u4 refused unread
        assert [uid for uid, _ in rows if emulator.user(uid)] == ["u1", "u2"]
        del emulator.dispatch
        emulator.api_key = "sandbox-key"
        set_model(tmp_path, "traits", values_sql(TRAITS, rows[:1]))  # u2..u6 leave
        second = reverse_etl.sync(tmp_path).runs[0]
        assert (second.status, second.removed, second.sent) == ("success", 1, 1)  # u2's removal only
        assert [uid for uid, _ in rows if emulator.user(uid)] == ["u1", "u2"], "profiles created for rows never sent"
        assert "plan" not in emulator.user("u2")  # type: ignore[operator]
