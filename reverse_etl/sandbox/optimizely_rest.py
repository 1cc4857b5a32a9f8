"""Optimizely Experimentation REST API v2, emulated: list attributes, attributes, custom events, audiences.

:class:`RestApi` answers authenticated, rate-limited ``/v2/...`` requests (authentication and the
rate limit live in :mod:`reverse_etl.sandbox.optimizely`). It is strict where the real API's
reference is vague, so a writer that passes here does not depend on leniency:

* Bodies must be JSON objects with only the documented fields (unknown or read-only fields → 400).
* ``PATCH /list_attributes/{id}`` needs the same fields as creating one (the reference says "Required
  arguments are identical to creating a new List Attribute"); ``list_content`` there replaces the
  whole list, and leaving it out keeps the members.
* ``list_content`` is ``"id1,id2,..."``: no empty values, no whitespace around a value, at most
  ``max_list_bytes`` UTF-8 bytes; ``""`` is the empty list. Members are kept as an ordered set.
  Responses carry a list attribute's metadata, never its members.
* Keys (attributes, custom events) and list attribute names are unique per project *including
  archived objects*: archiving does not free a name. ``PATCH {"archived": false}`` restores one.
* ``DELETE`` archives (204) and list endpoints still return archived objects, flagged.
* Lists need ``project_id`` and page with ``per_page`` (1..100, default 25) and ``page`` (from 1);
  the answer is a JSON array with a ``Link`` header (``first``/``prev``/``next``/``last``).
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import orjson

from reverse_etl.sandbox.http import BadJson, Request, Response

WEB = "web"
PLATFORMS = frozenset({"web", "custom", "feature"})  # "custom" is the API's name for Feature Experimentation
LIST_TYPES = frozenset({"cookies", "query_parameters", "zip_codes", "js_variables"})
EVENT_CATEGORIES = frozenset(
    {"add_to_cart", "save", "search", "share", "purchase", "convert", "sign_up", "subscribe", "other"}
)
KEY_MAX = 64
DEFAULT_PER_PAGE = 25
MAX_PER_PAGE = 100
DEFAULT_MAX_LIST_BYTES = 5 * 1024 * 1024
FIRST_ID = 5_000_001  # far from the default project ids, so a mixed-up id is a 404, not a wrong object

_LIST_NAME = re.compile(r"[-_0-9A-Za-z]+")
_ATTRIBUTE_KEY = re.compile(r"[a-zA-Z0-9_\- .]+")
_MAX_CONDITION_DEPTH = 32
_DIGITS = re.compile(r"[0-9]+")  # not str.isdigit(): it accepts "²", which int() refuses

KINDS = ("list_attributes", "attributes", "custom_events", "audiences")


class RestError(Exception):
    """An answer other than success, raised from deep inside a handler."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    """The REST API's error body: ``{"code", "message", "uuid"}``."""
    return Response.json(status, {"code": code, "message": message, "uuid": str(uuid.uuid4())}, headers)


def _bad(message: str) -> RestError:
    return RestError(400, "BAD_REQUEST", message)


def _not_found(what: str) -> RestError:
    return RestError(404, "NOT_FOUND", f"{what} not found")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- field validation ----------------------------------------------------------------------
def _body(request: Request, *, required: set[str], optional: set[str], what: str) -> dict[str, Any]:
    try:
        body = request.json() if request.body else None
    except BadJson as exc:
        raise _bad(f"{what}: the body is not valid JSON ({exc})") from None
    if not isinstance(body, dict):
        raise _bad(f"{what}: the body must be a JSON object")
    unknown = sorted(set(body) - required - optional)
    if unknown:
        raise _bad(f"{what}: unknown field(s): {', '.join(unknown)}")
    missing = sorted(required - set(body))
    if missing:
        raise _bad(f"{what}: missing required field(s): {', '.join(missing)}")
    return body


def _text(
    body: dict[str, Any],
    name: str,
    *,
    empty_ok: bool = True,
    max_len: int | None = None,
    pattern: re.Pattern[str] | None = None,
    allowed: frozenset[str] | None = None,
) -> str:
    value = body[name]
    if not isinstance(value, str):
        raise _bad(f"{name} must be a string, got {type(value).__name__}")
    if not value and not empty_ok:
        raise _bad(f"{name} must not be empty")
    if max_len is not None and len(value) > max_len:
        raise _bad(f"{name} is {len(value)} characters long; at most {max_len} allowed")
    if pattern is not None and value and not pattern.fullmatch(value):
        raise _bad(f"{name} {value!r} may only contain characters matching {pattern.pattern}")
    if allowed is not None and value not in allowed:
        raise _bad(f"{name} {value!r} is not one of: {', '.join(sorted(allowed))}")
    return value


def _flag(body: dict[str, Any], name: str) -> bool:
    value = body[name]
    if not isinstance(value, bool):
        raise _bad(f"{name} must be true or false")
    return value


def parse_list_content(value: Any, max_bytes: int) -> list[str]:
    """``"id1,id2,..."`` as an ordered set of members; :class:`RestError` (400) when malformed."""
    if not isinstance(value, str):
        raise _bad('list_content must be a string of comma-separated values, e.g. "id1,id2"')
    size = len(value.encode())
    if size > max_bytes:
        raise _bad(f"list_content is {size} bytes; at most {max_bytes} allowed")
    if value == "":
        return []
    members: dict[str, None] = {}
    for position, item in enumerate(value.split(","), start=1):
        if not item.strip():
            raise _bad(f"list_content has an empty value at position {position}")
        if item != item.strip():
            raise _bad(f"list_content value {item!r} at position {position} has surrounding whitespace")
        members.setdefault(item, None)
    return list(members)


def check_conditions(value: Any) -> None:
    """An audience's ``conditions``: a JSON *string* of ``["and"|"or"|"not", operand, ...]``."""
    if not isinstance(value, str):
        raise _bad(
            "conditions must be a JSON-encoded string such as "
            '"[\\"and\\", {\\"type\\": \\"custom_attribute\\", \\"name\\": \\"plan\\", \\"value\\": \\"pro\\"}]"'
            f", not a JSON {type(value).__name__}"
        )
    try:
        tree = orjson.loads(value)
    except orjson.JSONDecodeError:
        raise _bad("conditions is not valid JSON") from None
    _check_condition_node(tree, "conditions", 0)


def _check_condition_node(node: Any, where: str, depth: int) -> None:
    if depth > _MAX_CONDITION_DEPTH:
        raise _bad(f"{where}: conditions are nested too deeply")
    if not isinstance(node, list) or not node or node[0] not in ("and", "or", "not"):
        raise _bad(f'{where} must be a list starting with "and", "or" or "not"')
    operands = node[1:]
    if node[0] == "not" and len(operands) != 1:
        raise _bad(f'{where}: "not" takes exactly one operand, got {len(operands)}')
    for index, operand in enumerate(operands, start=1):
        here = f"{where}[{index}]"
        if isinstance(operand, list):
            _check_condition_node(operand, here, depth + 1)
        elif isinstance(operand, dict):
            if not isinstance(operand.get("type"), str) or not operand["type"]:
                raise _bad(f"{here}: a condition needs a non-empty string type")
            if "name" not in operand and "value" not in operand:
                raise _bad(f"{here}: a condition needs a name or a value")
        else:
            raise _bad(f"{here} must be a condition object or a nested list")


# --- the API -------------------------------------------------------------------------------
Handler = Callable[[Request, tuple[int, ...]], Response]


class RestApi:
    """The objects of the REST v2 API and the handlers that change them. Not thread-safe by itself:
    the emulator calls it under its lock."""

    def __init__(self, *, projects: dict[int, str], account_id: int, max_list_bytes: int) -> None:
        self.projects = dict(projects)
        self.account_id = account_id
        self.max_list_bytes = max_list_bytes
        self.objects: dict[str, dict[int, dict[str, Any]]] = {}
        self.members: dict[int, dict[str, None]] = {}  # list attribute id → ordered set of members
        self.next_id = FIRST_ID
        self.reset()

        def item(kind: str, update: Handler) -> dict[str, Handler]:
            return {"GET": self._shower(kind), "PATCH": update, "DELETE": self._archiver(kind)}

        n = "([0-9]+)"  # see _DIGITS
        routes: list[tuple[str, dict[str, Handler]]] = [
            ("projects", {"GET": self._projects_index}),
            (f"projects/{n}", {"GET": self._project_show}),
            ("list_attributes", {"GET": self._list_index, "POST": self._list_create}),
            (f"list_attributes/{n}", item("list_attributes", self._list_update)),
            ("attributes", {"GET": self._attribute_index, "POST": self._attribute_create}),
            (f"attributes/{n}", item("attributes", self._attribute_update)),
            ("events", {"GET": self._event_index}),
            (f"events/{n}", {"GET": self._shower("custom_events")}),
            (f"projects/{n}/custom_events", {"POST": self._event_create}),
            (f"projects/{n}/custom_events/{n}", {"PATCH": self._event_update, "DELETE": self._event_archive}),
            ("audiences", {"GET": self._audience_index, "POST": self._audience_create}),
            (f"audiences/{n}", item("audiences", self._audience_update)),
        ]
        self._routes = [(re.compile("/v2/" + pattern), methods) for pattern, methods in routes]

    def reset(self) -> None:
        """Forget every object (the projects are configuration and stay)."""
        self.objects = {kind: {} for kind in KINDS}
        self.members = {}
        self.next_id = FIRST_ID

    def handle(self, request: Request, *, reject: Callable[[], bool]) -> Response:
        """Route one authenticated request. ``reject()`` true makes a write answer 400 unapplied."""
        for pattern, methods in self._routes:
            match = pattern.fullmatch(request.path)
            if match is None:
                continue
            handler = methods.get(request.method)
            if handler is None:
                allowed = ", ".join(sorted(methods))
                return error_response(
                    405,
                    "METHOD_NOT_ALLOWED",
                    f"{request.method} is not allowed on {request.path}",
                    {"Allow": allowed},
                )
            if request.method != "GET" and reject():
                return error_response(400, "BAD_REQUEST", "request rejected (injected fault)")
            try:
                return handler(request, tuple(int(g) for g in match.groups()))
            except RestError as exc:
                return error_response(exc.status, exc.code, exc.message)
        return error_response(404, "NOT_FOUND", f"no such endpoint: {request.method} {request.path}")

    # --- state ---------------------------------------------------------------------------
    def dump(self) -> dict[str, Any]:
        """Objects and members as JSON-able data."""
        data: dict[str, Any] = {kind: [dict(o) for o in self.objects[kind].values()] for kind in KINDS}
        data["list_members"] = {str(i): list(m) for i, m in self.members.items()}
        data["next_id"] = self.next_id
        return data

    def load(self, data: dict[str, Any]) -> None:
        """Restore what :meth:`dump` wrote."""
        self.reset()
        for kind in KINDS:
            self.objects[kind] = {int(o["id"]): dict(o) for o in data.get(kind, [])}
        self.members = {int(i): dict.fromkeys(m) for i, m in data.get("list_members", {}).items()}
        highest = max((i for objs in self.objects.values() for i in objs), default=FIRST_ID - 1)
        self.next_id = max(int(data.get("next_id", FIRST_ID)), highest + 1)

    # --- shared helpers ------------------------------------------------------------------
    def _project(self, value: Any, *, web_only: bool = False) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad("project_id must be an integer")
        if value not in self.projects:
            raise _bad(f"project_id {value} is not a project of this account")
        if web_only and self.projects[value] != WEB:
            raise _bad(
                f"project {value} is a {self.projects[value]} project; list attributes exist only in Web projects"
            )
        return value

    def _query_project(self, request: Request, *, web_only: bool = False) -> int:
        raw = request.param("project_id")
        if raw is None:
            raise _bad("the project_id query parameter is required")
        if not _DIGITS.fullmatch(raw):
            raise _bad(f"project_id {raw!r} must be an integer")
        return self._project(int(raw), web_only=web_only)

    def _get(self, kind: str, object_id: int) -> dict[str, Any]:
        obj = self.objects[kind].get(object_id)
        if obj is None:
            raise _not_found(f"{kind.rstrip('s').replace('_', ' ')} {object_id}")
        return obj

    def _unique(
        self, kind: str, field: str, project_id: int, value: str, *, except_id: int | None = None
    ) -> None:
        for obj in self.objects[kind].values():
            if obj["project_id"] == project_id and obj[field] == value and obj["id"] != except_id:
                state = " (archived)" if obj["archived"] else ""
                raise _bad(
                    f"{field} {value!r} is already used in project {project_id} by id {obj['id']}{state}"
                )

    def _new(self, kind: str, fields: dict[str, Any]) -> dict[str, Any]:
        now = _now()
        obj = {"id": self.next_id, **fields, "archived": False, "created": now, "last_modified": now}
        self.next_id += 1
        self.objects[kind][obj["id"]] = obj
        return obj

    def _page(self, request: Request, kind: str, project_id: int) -> Response:
        per_page = self._int_param(request, "per_page", DEFAULT_PER_PAGE, MAX_PER_PAGE)
        page = self._int_param(request, "page", 1, None)
        items = [o for o in self.objects[kind].values() if o["project_id"] == project_id]
        items.sort(key=lambda o: o["id"])
        chunk = items[(page - 1) * per_page : page * per_page]
        last = max(1, math.ceil(len(items) / per_page))
        base = f"http://{request.headers.get('host', 'localhost')}{request.path}"
        params = {k: v[0] for k, v in request.query.items()} | {"per_page": str(per_page)}

        def link(n: int, rel: str) -> str:
            return f'<{base}?{urlencode(params | {"page": str(n)})}>; rel="{rel}"'

        links = [link(1, "first")]
        if 1 < page <= last + 1:
            links.append(link(page - 1, "prev"))
        if page < last:
            links.append(link(page + 1, "next"))
        links.append(link(last, "last"))
        return Response.json(200, [dict(o) for o in chunk], {"Link": ", ".join(links)})

    @staticmethod
    def _int_param(request: Request, name: str, default: int, maximum: int | None) -> int:
        raw = request.param(name)
        if raw is None:
            return default
        if not _DIGITS.fullmatch(raw) or int(raw) < 1:
            raise _bad(f"{name} must be a positive integer, got {raw!r}")
        if maximum is not None and int(raw) > maximum:
            raise _bad(f"{name} must be at most {maximum}, got {raw}")
        return int(raw)

    def _same_project(self, body: dict[str, Any], obj: dict[str, Any]) -> None:
        if "project_id" in body and self._project(body["project_id"]) != obj["project_id"]:
            raise _bad(f"project_id cannot change (the object belongs to project {obj['project_id']})")

    def _touch(self, obj: dict[str, Any], changes: dict[str, Any]) -> Response:
        obj.update(changes)
        obj["last_modified"] = _now()
        return Response.json(200, dict(obj))

    def _shower(self, kind: str) -> Handler:
        def show(request: Request, ids: tuple[int, ...]) -> Response:
            return Response.json(200, dict(self._get(kind, ids[0])))

        return show

    def _archiver(self, kind: str) -> Handler:
        def archive(request: Request, ids: tuple[int, ...]) -> Response:
            obj = self._get(kind, ids[-1])
            obj["archived"] = True
            obj["last_modified"] = _now()
            return Response.empty(204)

        return archive

    # --- projects ------------------------------------------------------------------------
    def _project_json(self, project_id: int) -> dict[str, Any]:
        return {
            "id": project_id,
            "account_id": self.account_id,
            "name": f"Sandbox project {project_id}",
            "platform": self.projects[project_id],
            "status": "active",
        }

    def _projects_index(self, request: Request, ids: tuple[int, ...]) -> Response:
        return Response.json(200, [self._project_json(i) for i in sorted(self.projects)])

    def _project_show(self, request: Request, ids: tuple[int, ...]) -> Response:
        if ids[0] not in self.projects:
            raise _not_found(f"project {ids[0]}")
        return Response.json(200, self._project_json(ids[0]))

    # --- list attributes -----------------------------------------------------------------
    _LIST_REQUIRED = frozenset({"project_id", "name", "key_field", "list_type"})

    def _list_fields(self, body: dict[str, Any], project_id: int, except_id: int | None) -> dict[str, Any]:
        name = _text(body, "name", empty_ok=False, pattern=_LIST_NAME)
        self._unique("list_attributes", "name", project_id, name, except_id=except_id)
        fields = {
            "project_id": project_id,
            "name": name,
            "key_field": _text(body, "key_field", empty_ok=False),
            "list_type": _text(body, "list_type", allowed=LIST_TYPES),
        }
        if "description" in body:
            fields["description"] = _text(body, "description")
        return fields

    def _list_index(self, request: Request, ids: tuple[int, ...]) -> Response:
        return self._page(request, "list_attributes", self._query_project(request, web_only=True))

    def _list_create(self, request: Request, ids: tuple[int, ...]) -> Response:
        body = _body(
            request,
            required=set(self._LIST_REQUIRED),
            optional={"description", "list_content"},
            what="list attribute",
        )
        project_id = self._project(body["project_id"], web_only=True)
        fields = {"description": "", **self._list_fields(body, project_id, None)}
        members = (
            parse_list_content(body["list_content"], self.max_list_bytes) if "list_content" in body else []
        )
        obj = self._new("list_attributes", fields)
        self.members[obj["id"]] = dict.fromkeys(members)
        return Response.json(201, dict(obj))

    def _list_update(self, request: Request, ids: tuple[int, ...]) -> Response:
        obj = self._get("list_attributes", ids[0])
        body = _body(
            request,
            required=set(self._LIST_REQUIRED),
            optional={"description", "list_content", "archived"},
            what="list attribute update",
        )
        self._same_project(body, obj)
        changes = self._list_fields(body, obj["project_id"], obj["id"])
        if "archived" in body:
            changes["archived"] = _flag(body, "archived")
        if "list_content" in body:  # validate everything before replacing anything
            self.members[obj["id"]] = dict.fromkeys(
                parse_list_content(body["list_content"], self.max_list_bytes)
            )
        return self._touch(obj, changes)

    # --- attributes ----------------------------------------------------------------------
    def _attribute_key(self, body: dict[str, Any], project_id: int, except_id: int | None) -> str:
        key = _text(body, "key", empty_ok=False, max_len=KEY_MAX, pattern=_ATTRIBUTE_KEY)
        self._unique("attributes", "key", project_id, key, except_id=except_id)
        return key

    def _attribute_index(self, request: Request, ids: tuple[int, ...]) -> Response:
        return self._page(request, "attributes", self._query_project(request))

    def _attribute_create(self, request: Request, ids: tuple[int, ...]) -> Response:
        body = _body(
            request, required={"project_id", "key"}, optional={"name", "description"}, what="attribute"
        )
        project_id = self._project(body["project_id"])
        key = self._attribute_key(body, project_id, None)
        obj = self._new(
            "attributes",
            {
                "project_id": project_id,
                "key": key,
                "name": _text(body, "name") if "name" in body else key,
                "description": _text(body, "description") if "description" in body else "",
                "condition_type": "custom_attribute",
            },
        )
        return Response.json(201, dict(obj))

    def _attribute_update(self, request: Request, ids: tuple[int, ...]) -> Response:
        obj = self._get("attributes", ids[0])
        body = _body(
            request,
            required=set(),
            optional={"project_id", "key", "name", "description", "archived"},
            what="attribute update",
        )
        self._same_project(body, obj)
        changes: dict[str, Any] = {}
        if "key" in body:
            changes["key"] = self._attribute_key(body, obj["project_id"], obj["id"])
        for name in ("name", "description"):
            if name in body:
                changes[name] = _text(body, name)
        if "archived" in body:
            changes["archived"] = _flag(body, "archived")
        return self._touch(obj, changes)

    # --- custom events -------------------------------------------------------------------
    def _event_fields(self, body: dict[str, Any], project_id: int, except_id: int | None) -> dict[str, Any]:
        changes: dict[str, Any] = {}
        if "key" in body:
            changes["key"] = _text(body, "key", empty_ok=False, max_len=KEY_MAX)
            self._unique("custom_events", "key", project_id, changes["key"], except_id=except_id)
        if "event_type" in body:
            _text(body, "event_type", allowed=frozenset({"custom"}))
        if "category" in body:
            changes["category"] = _text(body, "category", allowed=EVENT_CATEGORIES)
        for name in ("name", "description"):
            if name in body:
                changes[name] = _text(body, name)
        if "archived" in body:
            changes["archived"] = _flag(body, "archived")
        return changes

    def _event_of(self, ids: tuple[int, ...]) -> dict[str, Any]:
        project_id, event_id = ids
        if project_id not in self.projects:
            raise _not_found(f"project {project_id}")
        obj = self._get("custom_events", event_id)
        if obj["project_id"] != project_id:
            raise _not_found(f"custom event {event_id} in project {project_id}")
        return obj

    def _event_index(self, request: Request, ids: tuple[int, ...]) -> Response:
        return self._page(request, "custom_events", self._query_project(request))

    def _event_create(self, request: Request, ids: tuple[int, ...]) -> Response:
        project_id = ids[0]
        if project_id not in self.projects:
            raise _not_found(f"project {project_id}")
        body = _body(
            request,
            required={"key"},
            optional={"name", "category", "event_type", "description"},
            what="custom event",
        )
        fields = self._event_fields(body, project_id, None)
        obj = self._new(
            "custom_events",
            {
                "project_id": project_id,
                "key": fields["key"],
                "name": fields.get("name", fields["key"]),
                "description": fields.get("description", ""),
                "category": fields.get("category", "other"),
                "event_type": "custom",
                "is_classic": False,
                "is_editable": True,
            },
        )
        return Response.json(201, dict(obj))

    def _event_update(self, request: Request, ids: tuple[int, ...]) -> Response:
        obj = self._event_of(ids)
        body = _body(
            request,
            required=set(),
            optional={"key", "name", "category", "event_type", "description", "archived"},
            what="custom event update",
        )
        return self._touch(obj, self._event_fields(body, obj["project_id"], obj["id"]))

    def _event_archive(self, request: Request, ids: tuple[int, ...]) -> Response:
        self._event_of(ids)
        return self._archiver("custom_events")(request, ids)

    # --- audiences -----------------------------------------------------------------------
    def _audience_index(self, request: Request, ids: tuple[int, ...]) -> Response:
        return self._page(request, "audiences", self._query_project(request))

    def _audience_fields(self, body: dict[str, Any]) -> dict[str, Any]:
        changes: dict[str, Any] = {}
        if "name" in body:
            changes["name"] = _text(body, "name", empty_ok=False)
        if "description" in body:
            changes["description"] = _text(body, "description")
        if "conditions" in body:
            check_conditions(body["conditions"])
            changes["conditions"] = body["conditions"]  # stored as sent: a JSON string, like the real API
        for flag in ("archived", "segmentation"):
            if flag in body:
                changes[flag] = _flag(body, flag)
        return changes

    def _audience_create(self, request: Request, ids: tuple[int, ...]) -> Response:
        body = _body(
            request,
            required={"project_id", "name", "conditions"},
            optional={"description", "segmentation"},
            what="audience",
        )
        project_id = self._project(body["project_id"])
        fields = {"description": "", "segmentation": False, **self._audience_fields(body)}
        obj = self._new("audiences", {"project_id": project_id, **fields, "is_classic": False})
        return Response.json(201, dict(obj))

    def _audience_update(self, request: Request, ids: tuple[int, ...]) -> Response:
        obj = self._get("audiences", ids[0])
        body = _body(
            request,
            required=set(),
            optional={"project_id", "name", "description", "conditions", "archived", "segmentation"},
            what="audience update",
        )
        self._same_project(body, obj)
        return self._touch(obj, self._audience_fields(body))
