"""What a request asks for: query parameters and JSON bodies, read and checked the same way
by the pages and the API; a bad value is an `HTTPProblem` 400 (415 for a body that is not
JSON) with one line saying what to send."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request

from scheduler.web.problems import HTTPProblem

RUN_FILTERS = ("schedule", "task", "status", "trigger", "worker", "since", "until")


def since_param(value: str | None, default: timedelta) -> datetime:
    """`1h`, `24h`, `7d`, `30m` or an ISO instant; default `now - default`."""
    now = datetime.now(UTC)
    if not value:
        return now - default
    text = value.strip()
    units = {"m": 60, "h": 3600, "d": 86400, "w": 604800}
    if len(text) > 1 and text[-1] in units and text[:-1].isdigit() and len(text) < 8:
        return now - timedelta(seconds=int(text[:-1]) * units[text[-1]])
    return instant_param(text, "since")


def instant_param(value: str, label: str) -> datetime:
    try:
        instant = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise HTTPProblem(400, f"{label} must be an ISO time like 2026-01-31T12:00:00Z") from None
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    try:
        return instant.astimezone(UTC)
    except (OverflowError, ValueError):
        raise HTTPProblem(400, f"{label} is out of range") from None


def int_param(value: str | None, label: str, default: int, low: int, high: int) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise HTTPProblem(400, f"{label} must be a whole number") from None
    if not low <= number <= high:
        raise HTTPProblem(400, f"{label} must be between {low} and {high}")
    return number


def text_param(request: Request, name: str) -> str | None:
    value = request.query_params.get(name)
    if value is None or value == "":
        return None
    if "\x00" in value or len(value) > 1000:
        raise HTTPProblem(400, f"{name} holds a NUL character or is too long")
    return value


def run_filter_texts(request: Request) -> dict[str, str | None]:
    """The runs list's filters as sent (the page links back with them)."""
    return {name: text_param(request, name) for name in RUN_FILTERS}


def run_filter_args(texts: dict[str, str | None]) -> dict[str, Any]:
    """The filters of `run_filter_texts` as `api.aruns_page` takes them."""
    since, until = texts["since"], texts["until"]
    return {
        **texts,
        "since": instant_param(since, "since") if since else None,
        "until": instant_param(until, "until") if until else None,
    }


async def json_body(request: Request) -> dict[str, Any]:
    body = await request.body()
    if not body:
        return {}
    if "json" not in request.headers.get("content-type", ""):
        raise HTTPProblem(415, "send the body as application/json")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise HTTPProblem(400, "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise HTTPProblem(400, "the body must be a JSON object")
    if "\\u0000" in body.decode("utf-8", "replace") or "\x00" in body.decode("utf-8", "replace"):
        raise HTTPProblem(400, "the body holds a NUL character")
    return data
