"""The CLI surface: ``retl schedule --once``, ``retl sync --wait`` and errors, in process."""

from __future__ import annotations

from pathlib import Path

import orjson
from click.testing import CliRunner

from reverse_etl.cli.main import cli
from reverse_etl.sandbox import SandboxServer
from reverse_etl.scheduler import SyncLock
from reverse_etl.scheduler.state import locks_dir
from tests.conftest import braze_destination
from tests.scheduler.conftest import people_project


def invoke(root: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--project-dir", str(root), *args], catch_exceptions=False)
    return result.exit_code, result.stdout


def test_schedule_once_runs_what_is_due_then_nothing(tmp_path: Path, braze: SandboxServer) -> None:
    people_project(tmp_path, {"people": {"every": "1h"}, "daily": {"cron": "0 6 * * *"}}, destinations=braze_destination(braze))
    code, out = invoke(tmp_path, "schedule", "--once", "--format", "json")
    assert code == 0
    runs = orjson.loads(out)["runs"]
    assert [(r["sync"], r["status"], r["sent"]) for r in runs] == [("people", "success", 2)]  # cron waits for 06:00
    code, out = invoke(tmp_path, "schedule", "--once", "--format", "json")
    assert (code, orjson.loads(out)) == (0, {"runs": []})
    code, out = invoke(tmp_path, "schedule", "--once")
    assert code == 0 and "Nothing due." in out


def test_schedule_once_reports_already_running_and_exits_0(tmp_path: Path, braze: SandboxServer) -> None:
    people_project(tmp_path, {"people": {"every": "1h"}}, destinations=braze_destination(braze))
    lock = SyncLock(locks_dir(tmp_path / ".retl" / "state.duckdb"), "people", heartbeat=False)
    lock.acquire()
    try:
        code, out = invoke(tmp_path, "schedule", "--once", "--format", "json")
    finally:
        lock.release()
    (run,) = orjson.loads(out)["runs"]
    assert code == 0 and run["status"] == "skipped" and "already running" in run["error"]


def test_schedule_config_errors_exit_1_with_the_file(tmp_path: Path) -> None:
    people_project(tmp_path, {"people": {"cron": "61 * * * *"}})
    result = CliRunner().invoke(cli, ["--project-dir", str(tmp_path), "schedule", "--once"])
    assert result.exit_code == 1
    assert "syncs/people.yml" in result.output and "is not a cron expression" in result.output


def test_sync_takes_the_lock_and_wait_is_an_option(tmp_path: Path, braze: SandboxServer) -> None:
    people_project(tmp_path, {"people": {"every": "1h"}}, destinations=braze_destination(braze))
    lock = SyncLock(locks_dir(tmp_path / ".retl" / "state.duckdb"), "people", heartbeat=False)
    lock.acquire()
    try:
        code, out = invoke(tmp_path, "sync", "people", "--format", "json")
    finally:
        lock.release()
    assert code == 0 and orjson.loads(out)["runs"][0]["status"] == "skipped"
    code, out = invoke(tmp_path, "sync", "people", "--wait", "--format", "json")
    assert code == 0 and orjson.loads(out)["runs"][0]["status"] == "success"
    assert "--wait" in CliRunner().invoke(cli, ["sync", "--help"]).output
