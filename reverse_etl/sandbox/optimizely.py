"""Optimizely Experimentation, emulated strictly: REST API v2 and the Event API on one server.

Clients use ``base_url = <server.url>/v2`` and ``events_url = <server.url>/v1/events``.

* ``/v2/...`` (:mod:`reverse_etl.sandbox.optimizely_rest`): ``Authorization: Bearer <api_key>``
  (else 401), a per-token rate limit (``rest_rate_limit``; 429 with ``Retry-After``), errors as
  ``{"code", "message", "uuid"}``.
* ``POST /v1/events`` (:mod:`reverse_etl.sandbox.optimizely_events`): no auth, never rate limited,
  204 or 400 ``{"error"}`` / 413, all or nothing per batch, deduplicated by entity_id+uuid+timestamp.
* Other paths answer 404, other methods 405.

Fault injection: ``Faults.reject_rate`` makes a REST *write* (POST/PATCH/DELETE) answer 400 without
applying it (reads are never rejected), and makes an Event API batch answer 400 storing nothing.
The other faults (fail, throttle, drop, latency) come from :class:`~reverse_etl.sandbox.base.Emulator`
and apply to both APIs.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, ClassVar

from reverse_etl.sandbox.base import Emulator, Faults, RateLimit, _Window
from reverse_etl.sandbox.http import Request, Response
from reverse_etl.sandbox.optimizely_events import EventIntake
from reverse_etl.sandbox.optimizely_rest import DEFAULT_MAX_LIST_BYTES, PLATFORMS, RestApi, error_response

EVENTS_PATH = "/v1/events"
REST_PREFIX = "/v2/"


class OptimizelyEmulator(Emulator):
    """Optimizely Experimentation's REST API v2 and Event API, with state tests can assert on.

    ``projects`` maps project id → platform (``"web"``, or ``"custom"``/``"feature"`` for Feature
    Experimentation); list attributes exist only in web projects. ``rest_rate_limit`` limits
    ``/v2`` per token (``rate_limit`` is accepted as another name for it, for generic callers);
    :attr:`REAL_REST_RATE_LIMIT` is what the real API allows. ``require_known_events`` makes the
    Event API refuse events whose entity_id/key is not a live custom event of the project.
    """

    name = "optimizely"
    REAL_REST_RATE_LIMIT: ClassVar[RateLimit] = RateLimit(requests=2, per_seconds=1.0)

    def __init__(
        self,
        *,
        api_key: str | None = None,
        faults: Faults | None = None,
        rate_limit: RateLimit | None = None,
        rest_rate_limit: RateLimit | None = None,
        state_path: Path | str | None = None,
        projects: dict[int, str] | None = None,
        account_id: int = 2000,
        max_list_bytes: int = DEFAULT_MAX_LIST_BYTES,
        require_known_events: bool = False,
    ) -> None:
        projects = {1000: "web"} if projects is None else dict(projects)
        for project_id, platform in projects.items():
            if platform not in PLATFORMS:
                raise ValueError(
                    f"project {project_id}: platform {platform!r} is not one of {sorted(PLATFORMS)}"
                )
        self.account_id = account_id
        self.require_known_events = require_known_events
        self.rest = RestApi(projects=projects, account_id=account_id, max_list_bytes=max_list_bytes)
        self.intake = EventIntake()
        self.rest_rate_limit = rest_rate_limit or rate_limit
        self._rest_windows: dict[str, _Window] = {}
        # The base limit would throttle the Event API too, which the real one never does.
        super().__init__(api_key=api_key, faults=faults, rate_limit=None, state_path=state_path)

    # --- the API -------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        """Route to the Event API or, after auth and the rate limit, to REST v2."""
        if request.path == EVENTS_PATH:
            if request.method != "POST":
                return Response.json(405, {"error": f"{request.method} is not allowed"}, {"Allow": "POST"})
            return self.intake.handle(
                request,
                account_id=self.account_id,
                projects=self.rest.projects,
                known_event=self._known_event if self.require_known_events else None,
                reject=self.should_reject,
            )
        if not request.path.startswith(REST_PREFIX):
            return error_response(404, "NOT_FOUND", f"no such endpoint: {request.method} {request.path}")
        token = request.headers.get("authorization", "")
        if token != f"Bearer {self.api_key}":
            return error_response(
                401, "UNAUTHORIZED", "Authentication failed: missing or invalid personal access token"
            )
        extra: dict[str, str] = {}
        if self.rest_rate_limit is not None:
            window = self._rest_windows.setdefault(token, _Window(self.rest_rate_limit))
            admitted, remaining, reset = window.admit()
            extra = self.rate_limit_headers(remaining, reset)
            if not admitted:
                throttled = self.throttled(reset)
                return Response(throttled.status, throttled.body, {**extra, **throttled.headers})
        response = self.rest.handle(request, reject=self.should_reject)
        return Response(response.status, response.body, {**extra, **response.headers}) if extra else response

    def _known_event(self, project_id: int, entity_id: str) -> str | None:
        for event in self.rest.objects["custom_events"].values():
            if event["project_id"] == project_id and str(event["id"]) == entity_id and not event["archived"]:
                return str(event["key"])
        return None

    def rate_limit_headers(self, remaining: int, reset: float) -> dict[str, str]:
        """``X-RateLimit-*`` on every REST answer while a limit is set."""
        limit = self.rest_rate_limit
        return {
            "X-RateLimit-Limit": str(limit.requests if limit else 0),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(int(reset)),
        }

    def throttled(self, reset: float) -> Response:
        """429 in the REST error format, with ``Retry-After`` in whole seconds."""
        retry_after = max(1, int(reset - time.time() + 0.999))
        return error_response(
            429, "TOO_MANY_REQUESTS", "Rate limit exceeded; retry later", {"Retry-After": str(retry_after)}
        )

    def server_error(self) -> Response:
        """503 in the REST error format (injected)."""
        return error_response(503, "SERVICE_UNAVAILABLE", "Service unavailable (injected)")

    # --- state ---------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget every object and event; projects (configuration) stay."""
        self.rest.reset()
        self.intake.reset()

    def dump(self) -> dict[str, Any]:
        """All state as JSON-able data (project ids become strings of digits in ``projects``)."""
        return {
            "account_id": self.account_id,
            "projects": {str(i): p for i, p in sorted(self.rest.projects.items())},
            **self.rest.dump(),
            **self.intake.dump(),
        }

    def load(self, data: dict[str, Any]) -> None:
        """Restore :meth:`dump` output; its projects are added to the configured ones."""
        self.rest.projects.update({int(i): p for i, p in data.get("projects", {}).items()})
        self.rest.load(data)
        self.intake.load(data)

    # --- read helpers (tests, ``retl sandbox show optimizely``) ----------------------------
    def list_attribute(self, name: str, project_id: int | None = None) -> dict[str, Any] | None:
        """The list attribute called ``name`` with its ``members`` as a list; a live one before an
        archived one when several projects (or an archived twin) share the name."""
        with self.lock:
            found = [
                obj
                for obj in self.rest.objects["list_attributes"].values()
                if obj["name"] == name and (project_id is None or obj["project_id"] == project_id)
            ]
            if not found:
                return None
            obj = min(found, key=lambda o: (o["archived"], o["id"]))
            return {**obj, "members": list(self.rest.members.get(obj["id"], {}))}

    def list_members(self, name: str, project_id: int | None = None) -> list[str]:
        """The members of list attribute ``name`` in upload order ([] if there is none)."""
        found = self.list_attribute(name, project_id)
        return list(found["members"]) if found else []

    def _objects(self, kind: str, project_id: int | None) -> list[dict[str, Any]]:
        with self.lock:
            objs = self.rest.objects[kind].values()
            return [dict(o) for o in objs if project_id is None or o["project_id"] == project_id]

    def attributes(self, project_id: int | None = None) -> list[dict[str, Any]]:
        """Attributes (archived ones included, flagged) in creation order."""
        return self._objects("attributes", project_id)

    def custom_events(self, project_id: int | None = None) -> list[dict[str, Any]]:
        """Custom events (archived ones included, flagged) in creation order."""
        return self._objects("custom_events", project_id)

    def audiences(self, project_id: int | None = None) -> list[dict[str, Any]]:
        """Audiences (archived ones included; ``conditions`` as the JSON string sent)."""
        return self._objects("audiences", project_id)

    def conversion_events(self) -> list[dict[str, Any]]:
        """Stored Event API events in arrival order, each with its ``visitor_id`` and ``project_id``."""
        with self.lock:
            return [dict(e) for e in self.intake.events]

    def user(self, user_id: str) -> dict[str, Any] | None:
        """One identifier as ``retl sandbox show --user`` prints it: the lists holding it and its
        conversion events (as ``visitor_id``); None when it appears in neither."""
        with self.lock:
            lists = [
                {"project_id": o["project_id"], "name": o["name"], "archived": o["archived"]}
                for o in self.rest.objects["list_attributes"].values()
                if user_id in self.rest.members.get(o["id"], {})
            ]
            events = [dict(e) for e in self.intake.events if e["visitor_id"] == user_id]
        if not lists and not events:
            return None
        return {"id": user_id, "list_attributes": lists, "conversion_events": events}

    def summary(self) -> dict[str, Any]:
        """Counts for ``retl sandbox show``: live/archived objects, list sizes, events, duplicates."""
        with self.lock:
            objects = self.rest.objects

            def count(kind: str) -> dict[str, int]:
                archived = sum(1 for o in objects[kind].values() if o["archived"])
                return {"live": len(objects[kind]) - archived, "archived": archived}

            return {
                "account_id": self.account_id,
                "projects": {str(i): p for i, p in sorted(self.rest.projects.items())},
                "list_attributes": [
                    {
                        "project_id": o["project_id"],
                        "name": o["name"],
                        "members": len(self.rest.members.get(o["id"], {})),
                        "archived": o["archived"],
                    }
                    for o in objects["list_attributes"].values()
                ],
                "attributes": count("attributes"),
                "custom_events": count("custom_events"),
                "audiences": count("audiences"),
                "conversion_events": len(self.intake.events),
                "duplicates_ignored": self.intake.duplicates_ignored,
            }
