"""``retl schedule`` as a real subprocess against the Braze emulator on loopback."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import orjson

from reverse_etl.sandbox import Faults, SandboxServer
from reverse_etl.sandbox.braze import BrazeEmulator
from tests.conftest import braze_destination
from tests.scheduler.conftest import people_project, write_people

RETL = [sys.executable, "-c", "from reverse_etl.cli.main import main; main()"]


class Retl:
    """A running ``retl`` subprocess whose stdout lines (JSON) are collected as they come."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([*RETL, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.strip():
                self.lines.put(orjson.loads(line))

    def next_run(self, timeout: float) -> dict[str, Any]:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no run within {timeout}s; stderr so far:\n{self.stderr()}") from None

    def quiet_for(self, seconds: float) -> None:
        time.sleep(seconds)
        assert self.lines.empty(), f"unexpected run: {self.lines.get()}"

    def stop(self, timeout: float = 20) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return "(still running)"
        assert self.proc.stderr is not None
        return self.proc.stderr.read()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def run_json(*args: str) -> Any:
    done = subprocess.run([*RETL, *args, "--format", "json"], capture_output=True, text=True, timeout=60)
    return orjson.loads(done.stdout)


def test_when_changed_runs_exactly_once_per_data_change(tmp_path: Path, braze: SandboxServer) -> None:
    emulator: BrazeEmulator = braze.emulator  # type: ignore[assignment]
    people_project(tmp_path, {"people": {"when_changed": True, "poll": "1s"}}, destinations=braze_destination(braze))
    retl = Retl("schedule", "--project-dir", str(tmp_path), "--format", "json")
    try:
        first = retl.next_run(timeout=30)
        assert (first["sync"], first["trigger"], first["status"], first["sent"]) == ("people", "when_changed", "success", 2)
        retl.quiet_for(2.5)  # polls see nothing new

        write_people(tmp_path, [("u1", "pro", 10.0), ("u2", "pro", 5.0), ("u3", "free", 0.0)])
        second = retl.next_run(timeout=20)
        assert (second["trigger"], second["reason"]) == ("when_changed", "its inputs changed")
        assert (second["added"], second["changed"], second["removed"], second["sent"]) == (1, 1, 0, 2)
        retl.quiet_for(2.5)  # exactly one run for the change

        assert retl.stop() == 0
    finally:
        retl.kill()
    assert emulator.user("u2")["plan"] == "pro" and emulator.user("u3") is not None  # type: ignore[index]
    history = run_json("runs", "--project-dir", str(tmp_path))["runs"]
    assert [(r["trigger"], r["status"]) for r in history] == [("schedule:when_changed", "success")] * 2
    assert not list((tmp_path / ".retl" / "locks").rglob("*.lock"))


def test_sigterm_mid_run_finishes_the_chunk_and_the_next_run_sends_the_rest(tmp_path: Path) -> None:
    rows = [(f"u{i:02}", "pro", float(i)) for i in range(20)]
    emulator = BrazeEmulator(faults=Faults(latency_ms=100))
    with SandboxServer(emulator) as server:
        dest = braze_destination(server, batch_size=1, concurrency=1, checkpoint_rows=2)
        people_project(tmp_path, {"people": {"every": "1h"}}, destinations=dest, rows=rows)
        retl = Retl("schedule", "--project-dir", str(tmp_path), "--format", "json")
        try:
            deadline = time.monotonic() + 30
            while emulator.requests_to("/users/track") < 3:
                assert time.monotonic() < deadline, retl.stderr()
                time.sleep(0.02)
            assert retl.stop() == 0
            stopped = retl.next_run(timeout=5)
        finally:
            retl.kill()
        assert stopped["status"] == "interrupted" and 0 < stopped["sent"] < 20
        conn = duckdb.connect(str(tmp_path / ".retl" / "state.duckdb"), read_only=True)
        table = conn.execute("SELECT snapshot_table FROM _retl_syncs").fetchone()[0]  # type: ignore[index]
        in_snapshot = conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]  # type: ignore[index]
        conn.close()
        assert in_snapshot == stopped["sent"] == len(emulator.users())  # every acked row, nothing else

        rest = run_json("sync", "--project-dir", str(tmp_path))["runs"][0]
        assert (rest["status"], rest["added"], rest["sent"]) == ("success", 20 - stopped["sent"], 20 - stopped["sent"])
    assert len(emulator.users()) == 20
    assert os.path.exists(tmp_path / ".retl" / "state.scheduler.json")
