"""A sync killed mid-run: only acknowledged rows are in the snapshot; the rerun sends exactly the rest."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import reverse_etl
from reverse_etl.sandbox import Faults, SandboxServer
from reverse_etl.sandbox.braze import BrazeEmulator
from tests.core.test_sync_e2e import snapshot_keys
from tests.helpers import audience_sync, values_sql, write_project

ROWS = 400


def test_sigkill_between_batches_then_rerun_sends_exactly_the_rest(tmp_path: Path) -> None:
    emulator = BrazeEmulator(faults=Faults(latency_ms=25))
    with SandboxServer(emulator) as server:
        write_project(
            tmp_path,
            models={"members": values_sql(["user_id"], [(f"u{i:04d}",) for i in range(ROWS)])},
            syncs={"audiences": [audience_sync()]},
            destinations={"braze": {"type": "braze", "base_url": server.url, "api_key": "sandbox-key",
                                    "batch_size": 10, "concurrency": 1, "checkpoint_rows": 20}},
        )
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "reverse_etl", "--project-dir", str(tmp_path), "sync", "--format", "json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        )
        deadline = time.monotonic() + 60
        while emulator.requests_to("/users/track") < 11 and time.monotonic() < deadline:
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode() if proc.stderr else ""

        acknowledged = snapshot_keys(tmp_path, "members")
        delivered = {uid for uid, u in emulator.users().items() if u.get("vip") is True}
        assert acknowledged, "the run was killed before its first checkpoint; the test proves nothing"
        assert len(acknowledged) < ROWS
        assert len(acknowledged) % 20 == 0  # whole chunks only
        assert acknowledged <= delivered  # nothing in the snapshot that Braze does not hold

        result = reverse_etl.sync(tmp_path)
        run = result.runs[0]
        assert result.exit_code == 0
        assert run.sent == ROWS - len(acknowledged)
        assert len(emulator.users()) == ROWS
        assert all(u["vip"] is True for u in emulator.users().values())
        history = reverse_etl.history(tmp_path)
        assert [r.status for r in history] == ["success", "aborted"]
