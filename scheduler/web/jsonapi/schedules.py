"""`/api/v1/schedules`: list, create, read, change, delete; and trigger, pause, resume,
backfill one schedule. Roles: viewer reads, operator runs and pauses, admin defines."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from scheduler import api
from scheduler.core.accounts import Role
from scheduler.core.definitions import from_row, to_mapping
from scheduler.web.bridge import call
from scheduler.web.definitions import definition_from, refuse_existing
from scheduler.web.jsonapi.endpoint import api_route, ok
from scheduler.web.pages import describe, upcoming
from scheduler.web.params import instant_param, int_param, json_body, text_param
from scheduler.web.principals import actor_of
from scheduler.web.problems import HTTPProblem


def _schedule_out(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if k != "recent"}
    out["schedule_text"] = describe(row)
    return out


def _flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise HTTPProblem(400, f"{name} must be true or false")
    return value


@api_route(Role.VIEWER)
async def list_schedules(request: Request) -> Response:
    data = await call(
        api.aschedules_page(
            search=text_param(request, "search"),
            state=text_param(request, "state"),
            after=text_param(request, "after"),
            limit=int_param(request.query_params.get("limit"), "limit", 50, 1, 500),
            sparkline=1,
        )
    )
    return ok({**data, "schedules": [_schedule_out(r) for r in data["schedules"]]})


@api_route(Role.ADMIN, writes=True)
async def create_schedule(request: Request) -> Response:
    data = await json_body(request)
    definition = definition_from(data)
    await refuse_existing(definition.name, "PATCH it instead")
    await call(api.aupsert_schedule(definition, actor=actor_of(request)))
    return ok(_schedule_out(await call(api.aschedule(definition.name))), 201)


@api_route(Role.VIEWER)
async def get_schedule(request: Request) -> Response:
    row = await call(api.aschedule(request.path_params["name"]))
    return ok({**_schedule_out(row), "upcoming": upcoming(row, 10, datetime.now(UTC))})


@api_route(Role.ADMIN, writes=True)
async def patch_schedule(request: Request) -> Response:
    name = request.path_params["name"]
    changes = await json_body(request)
    row = await call(api.aschedule(name))
    merged = {**to_mapping(from_row(row)), **changes, "name": name}
    kinds = [k for k in ("cron", "interval_seconds", "every", "run_at", "at") if k in changes]
    if kinds:
        for key in ("cron", "interval_seconds", "run_at"):
            if key not in changes:
                merged.pop(key, None)
    definition = definition_from({k: v for k, v in merged.items() if v is not None or k in changes})
    outcome = await call(api.aupsert_schedule(definition, actor=actor_of(request)))
    return ok({**_schedule_out(await call(api.aschedule(name))), "outcome": outcome.value})


@api_route(Role.ADMIN, writes=True)
async def delete_schedule(request: Request) -> Response:
    name = request.path_params["name"]
    await call(api.aremove_schedule(name, actor=actor_of(request)))
    return ok({"deleted": name})


@api_route(Role.OPERATOR, writes=True)
async def trigger_schedule(request: Request) -> Response:
    body = await json_body(request)
    force = _flag(body, "force")
    args, kwargs = body.get("args"), body.get("kwargs")
    if args is not None and not isinstance(args, list):
        raise HTTPProblem(400, "args must be a JSON array")
    if kwargs is not None and not isinstance(kwargs, dict):
        raise HTTPProblem(400, "kwargs must be a JSON object")
    result = await call(
        api.atrigger(
            request.path_params["name"], force=force, args=args, kwargs=kwargs,
            actor=actor_of(request),
        )
    )  # fmt: skip
    return ok(
        {
            "execution_id": result.execution_id,
            "status": result.status.value,
            "reason": result.reason,
        },
        201 if result.status.value != "skipped" else 200,
    )


@api_route(Role.OPERATOR, writes=True)
async def pause_schedule(request: Request) -> Response:
    body = await json_body(request)
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise HTTPProblem(400, 'a pause needs a reason: send {"reason": "..."}')
    row = await call(
        api.apause_schedule(request.path_params["name"], reason[:2000], actor=actor_of(request))
    )
    return ok(_schedule_out(row))


@api_route(Role.OPERATOR, writes=True)
async def resume_schedule(request: Request) -> Response:
    await json_body(request)
    row = await call(api.aresume_schedule(request.path_params["name"], actor=actor_of(request)))
    return ok(_schedule_out(row))


@api_route(Role.OPERATOR, writes=True)
async def backfill_schedule(request: Request) -> Response:
    body = await json_body(request)
    start, end = body.get("from"), body.get("to")
    if not isinstance(start, str) or not isinstance(end, str):
        raise HTTPProblem(400, "a backfill needs from and to as ISO times")
    force = _flag(body, "force")
    dry_run = _flag(body, "dry_run")
    report = await call(
        api.abackfill(
            request.path_params["name"], instant_param(start, "from"), instant_param(end, "to"),
            force=force, dry_run=dry_run, actor=actor_of(request),
        )
    )  # fmt: skip
    return ok(dataclasses.asdict(report), 200 if dry_run else 201)
