"""API keys never leave the process in text: not in logs, errors, plans, run history, JSON output
or --debug tracebacks, even when the destination echoes the key back in its answers."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

import reverse_etl
from reverse_etl import secrets
from reverse_etl.cli.main import cli
from reverse_etl.delivery.client import Call, DeliveryClient, DeliverySettings
from reverse_etl.destinations.braze.writer import BrazeWriter
from reverse_etl.errors import TerminalError
from reverse_etl.sandbox import SandboxServer
from reverse_etl.sandbox.braze import BrazeEmulator
from reverse_etl.sandbox.http import Request, Response
from tests.helpers import records_sync, values_sql, write_project

KEY = "brz-live-7f3c9a1e5d2b4c6a8e0f"


class EchoingBraze(BrazeEmulator):
    """A Braze that quotes the caller's Authorization header in every per-object error."""

    def handle(self, request: Request) -> Response:
        body = orjson.loads(request.body or b"{}")
        if request.path == "/users/track" and any(o.get("plan") == "echo" for o in body.get("attributes", [])):
            errors = [{"type": f"refused for {request.headers.get('authorization')}", "input_array": "attributes", "index": i}
                      for i, o in enumerate(body["attributes"]) if o.get("plan") == "echo"]
            return Response.json(201, {"message": "success", "errors": errors})
        return super().handle(request)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("BRAZE_API_KEY", KEY)
    with SandboxServer(EchoingBraze(api_key=KEY)) as server:
        write_project(
            tmp_path, models={"traits": values_sql(["user_id", "plan", "ltv"], [("u1", "pro", 1.0), ("u2", "echo", 2.0)])},
            syncs={"traits": [records_sync()]},
            destinations={"braze": {"type": "braze", "base_url": server.url, "api_key": "{{ env_var('BRAZE_API_KEY') }}"}},
        )
        yield tmp_path


def cli_run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_an_echoed_key_is_masked_in_sync_json_text_and_run_history(project: Path) -> None:
    code, out, err = cli_run("--project-dir", str(project), "sync", "--format", "json")
    assert code == 2
    run = orjson.loads(out)["runs"][0]
    assert run["rejected"] == 1 and "refused for Bearer ***" in run["rejected_sample"][0]["reason"]
    assert KEY not in out + err

    code, out, err = cli_run("--project-dir", str(project), "runs", "show", run["run_id"], "--format", "json")
    assert code == 0 and "refused for Bearer ***" in out and KEY not in out + err
    code, out, err = cli_run("--project-dir", str(project), "runs", "show", run["run_id"])
    assert "refused for Bearer ***" in out and KEY not in out + err
    assert all(KEY not in e.reason for e in reverse_etl.run_detail(project, run["run_id"]).errors)

    code, out, err = cli_run("--project-dir", str(project), "sync")  # text output of a rerun
    assert "***" in out and KEY not in out + err


def test_plans_and_saved_plans_hold_no_key(project: Path, tmp_path: Path) -> None:
    plan_file = tmp_path / "plan.json"
    code, out, err = cli_run("--project-dir", str(project), "diff", "--format", "json", "--out", str(plan_file))
    assert code == 0 and KEY not in out + err and KEY not in plan_file.read_text()
    code, out, err = cli_run("--project-dir", str(project), "validate", "--format", "json")
    assert code == 0 and KEY not in out + err


def test_a_run_error_quoting_the_key_is_masked_in_the_record(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def leaky_prepare(self: BrazeWriter) -> None:
        raise TerminalError(f"the API said: invalid key {KEY}")

    monkeypatch.setattr(BrazeWriter, "prepare", leaky_prepare)
    result = reverse_etl.sync(project)
    assert result.runs[0].status == "error" and result.runs[0].error == "the API said: invalid key ***"
    assert all(KEY not in (r.error or "") for r in reverse_etl.history(project))
    code, out, err = cli_run("--project-dir", str(project), "runs", "--format", "json")
    assert code == 0
    assert KEY not in out + err


def test_debug_tracebacks_and_unexpected_errors_are_masked(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError(f"connection to https://x:{KEY}@braze.test refused")

    secrets.register(KEY)
    monkeypatch.setattr(reverse_etl.api, "sync", boom)
    code, out, err = cli_run("--project-dir", str(project), "--debug", "sync", "--format", "json")
    assert code == 1
    assert "Traceback" in err and "RuntimeError" in err and "***" in err
    assert KEY not in out + err


def test_delivery_errors_never_quote_the_key() -> None:
    import asyncio

    import httpx

    settings = DeliverySettings(base_url="https://api.test", headers={}, auth_headers={"Authorization": f"Bearer {KEY}"},
                                max_retries=1, backoff_base_s=0.001)

    async def go() -> str:
        transport = httpx.MockTransport(lambda r: httpx.Response(503, text=f"overloaded; your key {KEY} is fine"))
        async with DeliveryClient(settings, transport) as client:
            try:
                await client.send(Call("POST", "/x", b"{}"))
            except Exception as exc:
                return str(exc)
        return ""

    message = asyncio.run(go())
    assert "gave up after 2 attempts" in message and "your key *** is fine" in message and KEY not in message


def test_scheduler_logs_are_masked(capsys: pytest.CaptureFixture[str]) -> None:
    from reverse_etl.cli.schedule import _log_to_stderr

    secrets.register(KEY)
    undo = _log_to_stderr()
    try:
        log = logging.getLogger("reverse_etl.scheduler")
        log.warning("sync failed: %s", f"401 for key {KEY}")
        try:
            raise RuntimeError(f"token {KEY} rejected")
        except RuntimeError:
            log.exception("unexpected")
    finally:
        undo()
    err = capsys.readouterr().err
    assert "401 for key ***" in err and "token *** rejected" in err and KEY not in err


def test_redaction_masks_the_longest_secret_whole() -> None:
    secrets.register("zq7x", "zq7x-9w8v-ijkl")
    assert secrets.redact("x zq7x-9w8v-ijkl y zq7x") == "x *** y ***"
    secrets.register("zq7")  # short values are never registered: they would mask ordinary words
    assert secrets.redact("zq7") == "zq7"
