"""Security: keys never shown, clear text only to this machine, private files, redacted previews.

The API key comes from an environment variable, as DESIGN.md prescribes, and the destination is
hostile: it echoes the credentials it was sent back in its error bodies, as some real APIs and
proxies do. Whatever the command - sync in every format, with --debug, the run history, a saved
plan, the scheduler's log - the key must not appear, in any output and in no file retl writes.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from reverse_etl.cli.main import cli
from reverse_etl.plan import redact_value
from reverse_etl.sandbox import Faults, SandboxServer
from reverse_etl.sandbox.braze import BrazeEmulator
from reverse_etl.sandbox.http import Request, Response
from tests.helpers import audience_sync, records_sync, set_model, values_sql, write_project
from tests.reliability.harness import RETL, retl_env, start_retl, wait_for

SECRET = "sk-live-9f8e7d6c5b4a39281706"
KEY_VAR = "RETL_TEST_SECURITY_KEY"


def run(root: Path, *args: str, key: str = SECRET) -> tuple[int, str]:
    """The CLI in process, with the key in the environment; exit code and stdout + stderr."""
    result = CliRunner().invoke(cli, ["--project-dir", str(root), *args], env={KEY_VAR: key})
    return result.exit_code, result.stdout + result.stderr


def echo_credentials(emulator: BrazeEmulator, status: int) -> None:
    """Answer every request with ``status`` and a body quoting the request's headers back."""

    def dispatch(request: Request) -> Response:
        body = {"message": f"rejected credentials {request.headers.get('authorization')}", "headers": request.headers}
        return emulator._log(request, Response.json(status, body))

    emulator.dispatch = dispatch  # type: ignore[method-assign]


def project(root: Path, url: str, **dest: Any) -> Path:
    return write_project(
        root,
        models={"members": values_sql(["user_id"], [("u1",), ("u2",)]),
                "traits": values_sql(["user_id", "plan"], [("u1", "pro"), ("u2", "free")])},
        syncs={"audiences": [audience_sync(schedule={"every": "1h"})], "traits": [records_sync(fields={"plan": "plan"})]},
        destinations={"braze": {"type": "braze", "base_url": url, "api_key": f"{{{{ env_var('{KEY_VAR}') }}}}",
                                "max_retries": 1, **dest}},
    )


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and "models" not in p.parts and "syncs" not in p.parts]


def assert_secret_nowhere(root: Path, outputs: list[str], secret: str = SECRET) -> None:
    for text in outputs:
        assert secret not in text, f"the key was printed: ...{text[max(0, text.find(secret) - 200):text.find(secret) + 50]}"
    for path in files_under(root):
        if path.name == "profiles.yml":
            continue
        assert secret.encode() not in path.read_bytes(), f"the key was written to {path}"


def test_api_key_is_never_printed_or_stored(tmp_path: Path) -> None:
    emulator = BrazeEmulator(api_key=SECRET)
    with SandboxServer(emulator) as server:
        project(tmp_path, server.url)
        outputs = []
        for status in (401, 403, 500):  # credentials refused / a server error, each quoting the key
            echo_credentials(emulator, status)
            for args in (("sync",), ("sync", "--format", "json"), ("--debug", "sync", "traits")):
                code, out = run(tmp_path, *args)
                assert code in (1, 2) and "***" in out, out  # the quoted key is there, masked
                outputs.append(out)
        _, out = run(tmp_path, "schedule", "--once", "--format", "json")  # the scheduler's log lines
        outputs.append(out)
        code, out = run(tmp_path, "runs", "--format", "json")
        outputs.append(out)
        for run_id in {r["run_id"] for r in json.loads(out)["runs"]}:
            outputs += [run(tmp_path, "runs", "show", run_id)[1], run(tmp_path, "runs", "show", run_id, "--format", "json")[1]]
        outputs.append(run(tmp_path, "runs")[1])
        outputs.append(run(tmp_path, "validate", "--format", "json")[1])
        code, out = run(tmp_path, "diff", "--out", str(tmp_path / "plan.json"), "--format", "json")
        assert code == 0 and (tmp_path / "plan.json").exists()
        outputs.append(out)
    assert_secret_nowhere(tmp_path, outputs)


def test_api_key_quoted_in_a_4xx_rejection_is_not_printed_or_stored(tmp_path: Path) -> None:
    emulator = BrazeEmulator(api_key=SECRET)
    with SandboxServer(emulator) as server:
        project(tmp_path, server.url)
        echo_credentials(emulator, 400)
        code, out = run(tmp_path, "sync", "--format", "json")
        assert code == 2
        run_id = json.loads(out)["runs"][0]["run_id"]
        shown = run(tmp_path, "runs", "show", run_id)[1]
    assert_secret_nowhere(tmp_path, [out, shown])


def test_a_key_no_header_can_carry_is_a_clear_error_even_with_debug(tmp_path: Path) -> None:
    # A key with a non-ASCII character once failed deep inside the HTTP client (an unexpected
    # error whose --debug traceback quoted the header). It is refused at load now, by name;
    # --debug tracebacks of unexpected errors are masked too (tests/core/test_secrets.py).
    key = SECRET + "é"
    with SandboxServer(BrazeEmulator()) as server:
        project(tmp_path, server.url)
        done = subprocess.run([*RETL, "--debug", "--project-dir", str(tmp_path), "sync", "traits"],
                              capture_output=True, text=True, env=retl_env(**{KEY_VAR: key}), timeout=60)
    assert done.returncode == 1 and "api_key contains" in done.stderr and "unexpected" not in done.stderr
    assert_secret_nowhere(tmp_path, [done.stdout, done.stderr], SECRET)


def test_a_key_with_a_trailing_newline_is_a_clear_error_and_not_printed(tmp_path: Path) -> None:
    with SandboxServer(BrazeEmulator(api_key=SECRET)) as server:
        project(tmp_path, server.url)
        code, out = run(tmp_path, "sync", "traits", "--format", "json", key=SECRET + "\n")
        history = run(tmp_path, "runs", "--format", "json")[1]
    assert_secret_nowhere(tmp_path, [out, history])
    assert code == 1 and "api_key" in out and "unexpected" not in out, out


# --- clear text only to this machine --------------------------------------------------------------
@pytest.mark.parametrize("url", [
    "http://example.com", "http://10.0.0.5:8080", "http://127.0.0.1.nip.io", "http://localhost.example.com",
    "http://127.0.0.1@evil.example.com", "http://[::ffff:8.8.8.8]", "ftp://127.0.0.1", "file:///etc/passwd",
    "127.0.0.1:8080",
])
@pytest.mark.parametrize("key", ["base_url", "events_url", "webhook"])
def test_plain_http_is_refused_unless_loopback(tmp_path: Path, url: str, key: str) -> None:
    dest: dict[str, Any] = {"type": "optimizely", "token": "t", "project_id": 1, "account_id": 2}
    extra: dict[str, Any] = {}
    if key == "webhook":
        extra = {"alerts": {"webhook": url}}
    else:
        dest[key] = url
    write_project(tmp_path, models={"members": values_sql(["user_id"], [("u1",)])}, destinations={"optimizely": dest},
                  target_extra=extra)
    code, out = run(tmp_path, "validate")
    assert code == 1
    assert f"{key} must use https unless the host is loopback" in out or "is not an http(s) URL" in out, out


@pytest.mark.parametrize("url", ["https://api.example.com/v2", "http://127.0.0.1:8080", "http://127.0.0.2", "http://localhost:9",
                                 "http://[::1]:9"])
def test_https_anywhere_and_http_to_loopback_are_allowed(tmp_path: Path, url: str) -> None:
    dest = {"type": "optimizely", "token": "t", "project_id": 1, "account_id": 2, "base_url": url, "events_url": url}
    write_project(tmp_path, models={"members": values_sql(["user_id"], [("u1",)])}, destinations={"optimizely": dest},
                  target_extra={"alerts": {"webhook": url}})
    code, out = run(tmp_path, "validate")
    assert code == 0, out


# --- files retl writes -------------------------------------------------------------------------------
def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_state_file_is_owner_only(tmp_path: Path) -> None:
    with SandboxServer(BrazeEmulator(api_key=SECRET)) as server:
        project(tmp_path, server.url)
        old = os.umask(0o022)  # the usual umask: files readable by everyone unless retl says otherwise
        try:
            code, _ = run(tmp_path, "sync")
        finally:
            os.umask(old)
    assert code == 0
    assert mode(tmp_path / ".retl" / "state.duckdb") == 0o600


def test_state_write_ahead_log_is_owner_only(tmp_path: Path) -> None:
    emulator = BrazeEmulator(api_key=SECRET, faults=Faults(latency_ms=20))
    with SandboxServer(emulator) as server:
        write_project(
            tmp_path, models={"members": values_sql(["user_id"], [(f"u{i:03d}",) for i in range(200)])},
            syncs={"audiences": [audience_sync()]},
            destinations={"braze": {"type": "braze", "base_url": server.url, "api_key": SECRET, "batch_size": 5,
                                    "concurrency": 1, "checkpoint_rows": 10}},
        )
        proc = start_retl(tmp_path, "sync", env=retl_env())
        wal = tmp_path / ".retl" / "state.duckdb.wal"
        try:
            wait_for(lambda: emulator.requests_to("/users/track") >= 6 and wal.exists(), timeout=30,
                     what="the first acknowledged chunks", proc=proc)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    assert mode(wal) == 0o600, f"{wal.name} is {oct(mode(wal))}"


def test_saved_plan_holds_no_secrets(tmp_path: Path) -> None:
    with SandboxServer(BrazeEmulator(api_key=SECRET)) as server:
        project(tmp_path, server.url)
        code, out = run(tmp_path, "diff", "--out", str(tmp_path / "plan.json"))
    assert code == 0
    plan = (tmp_path / "plan.json").read_text()
    assert json.loads(plan)["plans"] and SECRET not in plan and SECRET not in out
    assert server.url not in plan or "api_key" not in plan


# --- --redact ------------------------------------------------------------------------------------------
def test_redact_hashes_identifier_values_in_every_preview(tmp_path: Path) -> None:
    emulator = BrazeEmulator()
    with SandboxServer(emulator) as server:
        write_project(
            tmp_path,
            models={"traits": values_sql(["user_id", "email", "plan"], [("u1", "ann@example.com", "pro"), ("u2", "bo@example.com", "free")])},
            syncs={"traits": [records_sync(mode="mirror", fields={"email": "email", "plan": "plan"})]},
            destinations={"braze": {"type": "braze", "base_url": server.url, "api_key": "sandbox-key"}},
        )
        assert run(tmp_path, "sync")[0] == 0
        set_model(tmp_path, "traits", values_sql(["user_id", "email", "plan"], [("u1", "ann@example.com", "team"), ("u3", "cy@example.com", "pro")]))
        code, text = run(tmp_path, "diff", "--redact")
        _, markdown = run(tmp_path, "diff", "--redact", "--format", "markdown")
        _, dry = run(tmp_path, "sync", "--dry-run", "--redact")
        code_json, out = run(tmp_path, "diff", "--redact", "--format", "json", "--out", str(tmp_path / "plan.json"))
        requests_before = emulator.requests_to("/users/track")
        # the redacted plan still applies exactly: only the sample is hashed, not the fingerprint
        code_apply, applied = run(tmp_path, "sync", "--plan", str(tmp_path / "plan.json"), "--format", "json")
    assert code == code_json == 0
    assert code_apply == 0 and json.loads(applied)["runs"][0]["sent"] == 3, applied
    for preview in (text, markdown, dry, out, (tmp_path / "plan.json").read_text()):
        for user in ("u1", "u2", "u3"):
            assert f"={user}" not in preview and f'"{user}"' not in preview, preview
        assert redact_value("u1") in preview  # the same user, the same hash, in every preview
        assert "team" in preview  # field values stay readable
    assert "pro → team" in text  # the change itself is still shown
    sample = json.loads(out)["plans"][0]["sample"]
    assert sample["changed"][0]["key"] == {"user_id": redact_value("u1")}
    assert sample["added"][0]["values"]["user_id"] == redact_value("u3")
    assert sample["removed"][0]["key"] == {"user_id": redact_value("u2")}
    assert requests_before == 1  # the first sync's one request: previews send nothing


def test_redact_is_for_previews_only(tmp_path: Path) -> None:
    write_project(tmp_path, models={"members": values_sql(["user_id"], [("u1",)])}, syncs={"audiences": [audience_sync()]})
    code, out = run(tmp_path, "sync", "--redact")
    assert code == 1 and "--redact applies to previews" in out
    assert not (tmp_path / ".retl" / "state.duckdb").exists()


def test_redact_plan_hashes_both_sides_of_an_identity_change() -> None:
    from reverse_etl.plan import SyncPlan, redact_plan

    plan = SyncPlan(
        sync="s", type="records", mode="upsert", destination="braze", model="m", added=0, changed=1, removed=0,
        snapshot_rows=1, fingerprint="f",
        sample={"changed": [{"key": {"user_id": "u1"}, "action": "upsert",
                             "changes": {"email": ["old@example.com", "new@example.com"], "plan": ["pro", "team"]}}],
                "added": [{"key": {"user_id": 7}, "action": "upsert", "values": {"user_id": 7, "email": None, "plan": "pro"}}]},
    )
    redacted = redact_plan(plan, {"user_id", "email"})
    changed = redacted.sample["changed"][0]
    assert changed["key"] == {"user_id": redact_value("u1")}
    assert changed["changes"] == {"email": [redact_value("old@example.com"), redact_value("new@example.com")], "plan": ["pro", "team"]}
    added = redacted.sample["added"][0]
    assert added["values"] == {"user_id": redact_value("7"), "email": None, "plan": "pro"}  # no value, nothing to hide
    assert redact_value("u1") != redact_value("u2") and redact_value("u1").startswith("sha256:")
    assert (redacted.fingerprint, redacted.changed) == (plan.fingerprint, plan.changed)
    assert plan.sample["changed"][0]["key"] == {"user_id": "u1"}  # the original is left as it was
