"""Alerts reach a real loopback webhook and a real command, and never fail the run."""

from __future__ import annotations

import shlex
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest

from reverse_etl.config.profiles import AlertsConfig, load_target
from reverse_etl.results import SyncRun
from reverse_etl.scheduler.alerts import AlertSender, alerts_for_error, alerts_for_runs


class Receiver:
    """An http.server on 127.0.0.1 that records JSON bodies and answers ``status``."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                receiver.bodies.append(orjson.loads(self.rfile.read(length)))
                receiver.headers.append(dict(self.headers.items()))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/T000/secret-path"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def failed_run(**kwargs: Any) -> SyncRun:
    base: dict[str, Any] = {"sync": "traits", "status": "error", "run_id": "abc123", "error": "401 from https://api with key sk-LIVE-9999"}
    return SyncRun(**{**base, **kwargs})


def test_which_runs_alert() -> None:
    config = AlertsConfig(webhook="https://example.invalid/hook", rejected_threshold=2)
    runs = [
        failed_run(),
        SyncRun(sync="audience", status="guard", error="guard max_removals tripped"),
        SyncRun(sync="few", status="partial", rejected=2),  # at the threshold: quiet
        SyncRun(sync="many", status="partial", rejected=2, failed=1),  # over it (undelivered counts too)
        SyncRun(sync="fine", status="success", sent=10),
        SyncRun(sync="stopped", status="interrupted"),
    ]
    assert [(a.kind, a.sync) for a in alerts_for_runs(runs, config)] == [
        ("failure", "traits"), ("guard", "audience"), ("rejected", "many"),
    ]
    only_failures = AlertsConfig(command="true", on=["failure"])
    assert [a.kind for a in alerts_for_runs(runs, only_failures)] == ["failure"]
    assert [a.sync for a in alerts_for_error(["x", "y"], "model failed", only_failures)] == ["x", "y"]
    assert alerts_for_error(["x"], "model failed", AlertsConfig(command="true", on=["guard"])) == []


def test_webhook_gets_a_json_post_without_secrets(receiver: Receiver) -> None:
    config = AlertsConfig(webhook=receiver.url)
    alert = alerts_for_runs([failed_run()], config, trigger="schedule:cron")[0]
    sender = AlertSender(config, target="prod", project="shop", secrets=["sk-LIVE-9999"])
    assert sender.send([alert]) == []
    (body,) = receiver.bodies
    assert body["kind"] == "failure" and body["sync"] == "traits" and body["run_id"] == "abc123"
    assert body["target"] == "prod" and body["project"] == "shop" and body["trigger"] == "schedule:cron"
    assert body["text"].startswith("retl: sync traits failed: 401")
    assert body["details"] == "retl runs show abc123"
    assert "sk-LIVE-9999" not in orjson.dumps(body).decode() and "***" in body["error"]
    assert receiver.headers[0]["Content-Type"] == "application/json"


def test_a_failing_webhook_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    with Receiver(status=500) as down:
        config = AlertsConfig(webhook=down.url, timeout_s=0.5)
        problems = AlertSender(config, target="t", project="p").send(alerts_for_runs([failed_run()], config))
        assert len(down.bodies) == 2  # retried once
    assert problems and "answered 500" in problems[0]
    assert "secret-path" not in problems[0]  # webhook URLs are often secrets themselves
    assert "alert not delivered" in caplog.text
    closed = AlertsConfig(webhook=down.url, timeout_s=0.5)  # nothing listens any more
    assert AlertSender(closed, target="t", project="p").send(alerts_for_runs([failed_run()], closed))


def test_command_gets_the_alert_on_stdin(tmp_path: Path) -> None:
    out = tmp_path / "alert.json"
    script = f"import sys, os; open({str(out)!r}, 'w').write(os.environ['RETL_ALERT_KIND'] + '\\n' + sys.stdin.read())"
    config = AlertsConfig(command=f"{shlex.quote(sys.executable)} -c {shlex.quote(script)}")
    assert AlertSender(config, target="t", project="p").send(alerts_for_runs([failed_run()], config)) == []
    kind, body = out.read_text().split("\n", 1)
    assert kind == "failure" and orjson.loads(body)["sync"] == "traits"


def test_a_failing_or_hanging_command_is_reported_not_raised() -> None:
    failing = AlertsConfig(command="echo boom >&2; exit 3")
    (problem,) = AlertSender(failing, target="t", project="p").send(alerts_for_runs([failed_run()], failing))
    assert "exited 3: boom" in problem
    hanging = AlertsConfig(command="sleep 5", timeout_s=0.2)
    (problem,) = AlertSender(hanging, target="t", project="p").send(alerts_for_runs([failed_run()], hanging))
    assert "timed out" in problem


def test_profile_alerts_parse_including_yaml_on(tmp_path: Path) -> None:
    profiles = tmp_path / "profiles.yml"
    profiles.write_text(
        "targets:\n  dev:\n    alerts:\n      webhook: http://127.0.0.1:9/hook\n      on: [failure, guard]\n"
        "      rejected_threshold: 5\n"
    )
    alerts = load_target(profiles).config.alerts
    assert alerts is not None and alerts.on == ["failure", "guard"] and alerts.rejected_threshold == 5


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("      webhook: http://hooks.example.com/x\n", "https unless the host is loopback"),
        ("      on: [failure]\n", "webhook"),
        ("      command: x\n      on: [sometimes]\n", "sometimes"),
        ("      command: x\n      emails: [a@b.c]\n", "emails"),
    ],
)
def test_bad_alerts_are_config_errors(tmp_path: Path, body: str, message: str) -> None:
    from reverse_etl.errors import ConfigError

    profiles = tmp_path / "profiles.yml"
    profiles.write_text("targets:\n  dev:\n    alerts:\n" + body)
    with pytest.raises(ConfigError, match=message):
        load_target(profiles)
