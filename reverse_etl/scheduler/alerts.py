"""Alerts: tell a person when an unattended run needs them.

Configured per target (``alerts:`` in the profile, :class:`AlertsConfig`), fired by ``retl sync``
and ``retl schedule`` on:

- ``failure``: a run ended in ``error`` (or could not start: the model failed, bad credentials);
- ``rejected``: more than ``rejected_threshold`` rows of a run were rejected or not delivered;
- ``guard``: a guard refused a plan (nothing was sent; it needs ``--force`` or a fix).

Each alert is one JSON object (:meth:`Alert.payload`), POSTed to ``webhook`` and/or written to
the stdin of ``command`` (run by the shell, with ``RETL_ALERT_KIND`` and ``RETL_ALERT_SYNC`` set).
It carries a ``text`` line, so a Slack incoming webhook shows it as is. Payloads hold counts and
error messages, never row values or credentials: every secret of the target's destinations is
masked, and the webhook URL (often a secret itself) is never logged whole.

Sending never fails a run: a receiver that is down, slow or answers non-2xx is logged and
the run's result stands.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from reverse_etl.config.profiles import AlertsConfig
from reverse_etl.results import SyncRun

log = logging.getLogger("reverse_etl.scheduler")


@dataclass(frozen=True)
class Alert:
    kind: str  # failure | rejected | guard
    sync: str
    status: str
    error: str | None = None
    run_id: str | None = None
    trigger: str | None = None
    counts: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        if self.kind == "rejected":
            n = self.counts.get("rejected", 0) + self.counts.get("undelivered", 0)
            what = f"{n} row(s) not delivered"
        elif self.kind == "guard":
            what = "stopped by a guard"
        else:
            what = "failed"
        first = (self.error or "").strip().splitlines()[0] if self.error else ""
        return f"retl: sync {self.sync} {what}" + (f": {first}" if first else "")

    def payload(self, *, target: str, project: str, secrets: Iterable[str] = ()) -> dict[str, Any]:
        data: dict[str, Any] = {
            "source": "reverse_etl",
            "kind": self.kind,
            "text": self.summary(),
            "sync": self.sync,
            "status": self.status,
            "run_id": self.run_id,
            "trigger": self.trigger,
            "error": self.error,
            "target": target,
            "project": project,
            "host": socket.gethostname(),
            "at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            **self.counts,
        }
        if self.run_id:
            data["details"] = f"retl runs show {self.run_id}"
        return _mask(data, [s for s in secrets if s and len(s) >= 4])


def _mask(data: dict[str, Any], secrets: list[str]) -> dict[str, Any]:
    if not secrets:
        return data
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, str):
            for secret in secrets:
                value = value.replace(secret, "***")
        out[key] = value
    return out


def _counts(run: SyncRun) -> dict[str, int]:
    return {"added": run.added, "changed": run.changed, "removed": run.removed, "sent": run.sent,
            "rejected": run.rejected, "undelivered": run.failed}


def alerts_for_runs(runs: Iterable[SyncRun], config: AlertsConfig, trigger: str | None = None) -> list[Alert]:
    """The alerts ``config`` asks for about these finished runs."""
    out: list[Alert] = []
    for run in runs:
        kind = None
        if run.status == "error":
            kind = "failure"
        elif run.status == "guard":
            kind = "guard"
        elif run.rejected + run.failed > config.rejected_threshold:
            kind = "rejected"
        if kind in config.on:
            out.append(Alert(kind, run.sync, run.status, run.error, run.run_id, trigger, _counts(run)))
    return out


def alerts_for_error(syncs: Iterable[str], error: str, config: AlertsConfig, trigger: str | None = None) -> list[Alert]:
    """Failure alerts for syncs whose run could not even start (``error`` says why)."""
    if "failure" not in config.on:
        return []
    return [Alert("failure", sync, "error", error, None, trigger) for sync in syncs]


def _safe_url(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}/…"


class AlertSender:
    """Delivers alerts to one target's webhook and command. Never raises."""

    def __init__(
        self, config: AlertsConfig, *, target: str, project: str, secrets: Iterable[str] = (),
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.config = config
        self.target = target
        self.project = project
        self.secrets = tuple(secrets)
        self.transport = transport

    def send(self, alerts: Iterable[Alert]) -> list[str]:
        """Send each alert; return the problems met (also logged), empty if all went out."""
        problems: list[str] = []
        for alert in alerts:
            payload = alert.payload(target=self.target, project=self.project, secrets=self.secrets)
            body = orjson.dumps(payload)
            if self.config.webhook:
                problem = self._post(body)
                if problem:
                    problems.append(problem)
            if self.config.command:
                problem = self._run(body, alert)
                if problem:
                    problems.append(problem)
        for problem in problems:
            log.warning("alert not delivered: %s", problem)
        return problems

    def _post(self, body: bytes) -> str | None:
        assert self.config.webhook
        where = _safe_url(self.config.webhook)
        problem = None
        with httpx.Client(timeout=self.config.timeout_s, transport=self.transport, follow_redirects=False) as client:
            for attempt in range(2):  # one retry: a receiver restarting should not lose the alert
                try:
                    response = client.post(
                        self.config.webhook, content=body,
                        headers={"Content-Type": "application/json", "User-Agent": "reverse_etl"},
                    )
                except httpx.HTTPError as exc:
                    problem = f"webhook {where}: {type(exc).__name__}: {exc}"
                else:
                    if response.is_success:
                        return None
                    problem = f"webhook {where} answered {response.status_code}"
                    if response.status_code < 500 and response.status_code != 429:
                        return problem
                if attempt == 0:
                    time.sleep(min(1.0, self.config.timeout_s))
        return problem

    def _run(self, body: bytes, alert: Alert) -> str | None:
        assert self.config.command
        env = {**os.environ, "RETL_ALERT_KIND": alert.kind, "RETL_ALERT_SYNC": alert.sync}
        try:
            done = subprocess.run(
                self.config.command, shell=True, input=body, capture_output=True, timeout=self.config.timeout_s,
                env=env, check=False,
            )
        except subprocess.TimeoutExpired:
            return f"alert command timed out after {self.config.timeout_s:g}s"
        except OSError as exc:
            return f"alert command could not start: {exc}"
        if done.returncode != 0:
            tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
            return f"alert command exited {done.returncode}: {tail[0][:200]}"
        return None
