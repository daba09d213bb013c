"""`/api/v1/stats` (per schedule and per task counts and durations) and `/api/v1/audit`
(the audit trail, newest first)."""

from __future__ import annotations

from datetime import timedelta

from starlette.requests import Request
from starlette.responses import Response

from scheduler import api
from scheduler.core.accounts import Role
from scheduler.web.bridge import call
from scheduler.web.jsonapi.endpoint import api_route, ok
from scheduler.web.params import int_param, since_param, text_param


@api_route(Role.VIEWER)
async def stats(request: Request) -> Response:
    since = since_param(text_param(request, "since"), timedelta(hours=24))
    return ok(
        {
            "since": since,
            "schedules": await call(api.astats(since=since)),
            "tasks": await call(api.atask_stats(since=since)),
        }
    )


@api_route(Role.VIEWER)
async def audit(request: Request) -> Response:
    since = text_param(request, "since")
    entries = await call(
        api.aaudit_log(
            since=since_param(since, timedelta(days=3650)) if since else None,
            before_id=int_param(request.query_params.get("before"), "before", 0, 0, 2**62) or None,
            limit=int_param(request.query_params.get("limit"), "limit", 100, 1, 1000),
        )
    )
    return ok({"entries": entries})
