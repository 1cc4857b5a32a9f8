"""Small REST v2 helpers shared by the writers: paged listing, finding an object, error text."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import orjson

from reverse_etl.delivery.client import Call, DeliveryClient
from reverse_etl.delivery.transport import Answer
from reverse_etl.destinations.base import dumps
from reverse_etl.errors import TerminalError

PER_PAGE = 100  # the API's maximum
MAX_PAGES = 10_000  # a guard against a server whose Link header never ends
ENDPOINT = "rest"  # one rate-limit bucket for every REST call


def error_text(response: Answer) -> str:
    """The API's message (``{"code", "message"}`` or the Event API's ``{"error"}``) with the status."""
    try:
        body: Any = orjson.loads(response.content) if response.content else None
    except orjson.JSONDecodeError:
        body = None
    message = ""
    if isinstance(body, dict):
        message = str(body.get("message") or body.get("error") or "")
        if body.get("code") and message:
            message = f"{body['code']}: {message}"
    return f"{message or response.text[:200].strip() or 'no details'} (HTTP {response.status_code})"


def _json(response: Answer, what: str) -> Any:
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        raise TerminalError(f"{what}: the answer is not JSON: {response.text[:200]!r}") from None


async def request(
    client: DeliveryClient, method: str, path: str, body: dict[str, Any] | None = None, *, what: str
) -> Answer:
    """Send one REST call; raise :class:`TerminalError` on any answer but 2xx or 404."""
    response = await client.send(Call(method, path, dumps(body) if body is not None else None, (), ENDPOINT))
    if response.is_success or response.status_code == 404:
        return response
    raise TerminalError(f"{what}: {method} {path} answered {error_text(response)}", status_code=response.status_code)


async def list_all(client: DeliveryClient, path: str, project_id: int, *, what: str) -> list[dict[str, Any]]:
    """Every object of a project's index (``GET path?project_id=``), following the pages."""
    found: list[dict[str, Any]] = []
    for page in range(1, MAX_PAGES + 1):
        query = urlencode({"project_id": project_id, "per_page": PER_PAGE, "page": page})
        response = await request(client, "GET", f"{path}?{query}", what=what)
        if response.status_code == 404:
            raise TerminalError(f"{what}: GET {path} answered {error_text(response)}", status_code=404)
        items = _json(response, what)
        if not isinstance(items, list):
            raise TerminalError(f"{what}: GET {path} did not answer a list")
        found.extend(i for i in items if isinstance(i, dict))
        if "next" not in response.links or len(items) < PER_PAGE:
            break
    return found


async def find(
    client: DeliveryClient,
    *,
    index: str,
    item: str | None,
    project_id: int,
    field: str,
    value: str,
    what: str,
) -> dict[str, Any] | None:
    """The object of ``project_id`` whose ``field`` is ``value``: first the remembered ``item``
    path (one GET), else a scan of ``index``; a live object before an archived one."""
    if item is not None:
        response = await request(client, "GET", item, what=what)
        if response.status_code != 404:
            obj = _json(response, what)
            if isinstance(obj, dict) and obj.get(field) == value and obj.get("project_id") == project_id:
                return obj
    matches = [o for o in await list_all(client, index, project_id, what=what) if o.get(field) == value]
    if not matches:
        return None
    return min(matches, key=lambda o: (bool(o.get("archived")), int(o.get("id") or 0)))


async def create(client: DeliveryClient, path: str, body: dict[str, Any], *, what: str) -> dict[str, Any]:
    """POST ``body``; the created object (with its ``id``)."""
    response = await request(client, "POST", path, body, what=what)
    obj = _json(response, what) if response.status_code != 404 else None
    if not isinstance(obj, dict) or not isinstance(obj.get("id"), int):
        raise TerminalError(f"{what}: POST {path} answered {error_text(response)} without an object id")
    return obj
