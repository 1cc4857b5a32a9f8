"""The CLI contract: JSON shapes, exit codes 0 / 1 / 2, dry runs, saved plans, --help."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from reverse_etl.cli.main import cli
from reverse_etl.sandbox import SandboxServer
from reverse_etl.sandbox.braze import BrazeEmulator
from tests.conftest import braze_destination
from tests.helpers import audience_sync, records_sync, set_model, values_sql, write_project

TRAITS = ["user_id", "plan", "ltv", "country"]


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def project(tmp_path: Path, braze: SandboxServer) -> Path:
    return write_project(
        tmp_path,
        models={"members": values_sql(["user_id"], [("u1",), ("u2",)]),
                "traits": values_sql(TRAITS, [("u1", "pro", 1.5, "US"), ("u2", "free", 0.0, "XX")])},
        syncs={"audiences": [audience_sync()], "traits": [records_sync(fields={"plan": "plan", "country": "country"})]},
        destinations=braze_destination(braze),
    )


def test_help_explains_every_command() -> None:
    for args in ([], ["validate"], ["diff"], ["sync"], ["runs"], ["runs", "show"], ["sandbox", "serve"], ["sandbox", "show"]):
        code, out, _ = run(*args, "--help")
        assert code == 0 and "Usage:" in out and len(out) > 200, args


def test_validate(project: Path) -> None:
    code, out, _ = run("--project-dir", str(project), "validate", "--format", "json")
    assert code == 0
    assert json.loads(out) == {"valid": True, "target": "dev", "models": ["members", "traits"],
                               "syncs": ["members", "traits"], "destinations": ["braze"]}


def test_diff_json_shape_and_dry_run_sends_nothing(project: Path, braze: SandboxServer) -> None:
    code, out, _ = run("--project-dir", str(project), "diff", "audiences", "--format", "json")
    assert code == 0
    plan = json.loads(out)["plans"][0]
    assert {k: plan[k] for k in ("sync", "type", "mode", "destination", "added", "changed", "removed")} == {
        "sync": "members", "type": "audience", "mode": "mirror", "destination": "braze", "added": 2, "changed": 0, "removed": 0}
    assert plan["sample"]["added"][0]["key"] == {"user_id": "u1"}
    code, out, _ = run("--project-dir", str(project), "sync", "audiences", "--dry-run", "--format", "json")
    assert code == 0 and json.loads(out)["plans"][0]["added"] == 2
    assert braze.emulator.requests_to("/users/track") == 0


def test_sync_json_and_exit_codes(project: Path) -> None:
    code, out, _ = run("--project-dir", str(project), "sync", "audiences", "--format", "json")
    assert code == 0
    data = json.loads(out)  # stdout holds only JSON
    run0 = data["runs"][0]
    assert {k: run0[k] for k in ("sync", "status", "added", "changed", "removed", "sent", "failed")} == {
        "sync": "members", "status": "success", "added": 2, "changed": 0, "removed": 0, "sent": 2, "failed": 0}
    assert isinstance(run0["duration_s"], float)
    # a rejected row (country XX): the run completes with exit 2
    code, out, _ = run("--project-dir", str(project), "sync", "traits", "--format", "json")
    assert code == 2
    run1 = json.loads(out)["runs"][0]
    assert (run1["status"], run1["sent"], run1["failed"], run1["rejected"]) == ("partial", 1, 1, 1)
    # run history and row-level errors
    code, out, _ = run("--project-dir", str(project), "runs", "--format", "json")
    assert code == 0 and [r["sync"] for r in json.loads(out)["runs"]] == ["traits", "members"]
    code, out, _ = run("--project-dir", str(project), "runs", "show", run1["run_id"], "--format", "json")
    detail = json.loads(out)
    assert code == 0 and detail["errors"][0]["row_key"] == "u2" and detail["errors"][0]["kind"] == "rejected"


def test_config_error_exit_1_with_json_error(project: Path) -> None:
    (project / "syncs" / "broken.yml").write_text("syncs:\n  - name: x\n    modle: members\n")
    code, out, err = run("--project-dir", str(project), "sync", "--format", "json")
    assert code == 1
    assert "unknown key 'modle'" in json.loads(out)["error"]
    assert "did you mean 'model'" in err


def test_unknown_selector_exit_1(project: Path) -> None:
    code, _, err = run("--project-dir", str(project), "sync", "audiencs")
    assert code == 1 and "did you mean 'audiences'" in err


def test_saved_plan_applies_exactly_or_refuses(project: Path, braze: SandboxServer) -> None:
    plan_path = project / "plan.json"
    code, _, _ = run("--project-dir", str(project), "diff", "audiences", "--out", str(plan_path))
    assert code == 0 and json.loads(plan_path.read_text())["plans"][0]["added"] == 2
    code, out, _ = run("--project-dir", str(project), "sync", "--plan", str(plan_path), "--format", "json")
    assert code == 0 and json.loads(out)["runs"][0]["sent"] == 2
    # A new plan, then the data moves: applying the stale plan is refused and nothing is sent.
    set_model(project, "members", values_sql(["user_id"], [("u1",)]))
    run("--project-dir", str(project), "diff", "audiences", "--out", str(plan_path))
    set_model(project, "members", values_sql(["user_id"], [("u3",)]))
    before = braze.emulator.requests_to("/users/track")
    code, _, err = run("--project-dir", str(project), "sync", "--plan", str(plan_path))
    assert code == 1 and "data moved since the plan was made" in err
    assert braze.emulator.requests_to("/users/track") == before


def test_markdown_preview_shows_before_and_after(project: Path) -> None:
    run("--project-dir", str(project), "sync", "traits")
    set_model(project, "traits", values_sql(TRAITS, [("u1", "enterprise", 1.5, "US"), ("u2", "free", 0.0, "XX")]))
    code, out, _ = run("--project-dir", str(project), "diff", "traits", "--format", "markdown")
    assert code == 0
    assert "| `traits` | records | upsert | braze |" in out
    assert "`plan`: pro → enterprise" in out
    code, out, _ = run("--project-dir", str(project), "diff", "traits")
    assert "plan: pro → enterprise" in out


def test_sandbox_show_after_a_sandbox_run(tmp_path: Path) -> None:
    write_project(tmp_path, models={"members": values_sql(["user_id"], [("u1",)])}, syncs={"audiences": [audience_sync()]})
    code, _, _ = run("--project-dir", str(tmp_path), "sync")
    assert code == 0
    code, out, _ = run("--project-dir", str(tmp_path), "sandbox", "show", "braze", "--user", "u1")
    assert code == 0 and json.loads(out)["profile"]["vip"] is True
    code, out, _ = run("--project-dir", str(tmp_path), "sandbox", "show", "braze")
    assert json.loads(out)["summary"]["users"] == 1
    assert isinstance(BrazeEmulator, type)
