"""`/api/v1`: the JSON API (what the pages do, for scripts), and its OpenAPI document.

Credentials: `Authorization: Bearer TOKEN`, HTTP Basic, or the dashboard's session cookie
(then writes need the `X-CSRF-Token` header). Errors: `{"error": "one line"}`."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from scheduler import api
from scheduler.core.accounts import Role
from scheduler.core.definitions import (
    ScheduleDefinition,
    from_mapping,
    from_row,
    to_mapping,
    validate,
)
from scheduler.web.app import (
    actor_of,
    api_route,
    call,
    instant_param,
    int_param,
    json_body,
    jsonable,
    since_param,
    text_param,
)
from scheduler.web.auth import HTTPProblem
from scheduler.web.pages import describe, upcoming


def ok(value: Any, status: int = 200) -> Response:
    return JSONResponse(jsonable(value), status_code=status)


def _schedule_out(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if k != "recent"}
    out["schedule_text"] = describe(row)
    return out


_TEXT = ("name", "task", "cron", "timezone", "description", "misfire_policy", "overlap_policy")
_INTEGER = ("max_runs", "misfire_grace_seconds", "jitter_seconds")
_INSTANT = ("run_at", "at", "start_at", "end_at")
INT32 = 2**31 - 1


def _check_types(data: dict[str, Any]) -> None:
    """JSON types per field, before any of it reaches the definition or the database."""
    for key, value in data.items():
        if value is None and key not in ("name", "task"):
            continue
        if key in _TEXT or key in _INSTANT or key == "every":
            ok = isinstance(value, str)
        elif key in _INTEGER:
            ok = isinstance(value, int) and not isinstance(value, bool) and -INT32 <= value <= INT32
        elif key == "interval_seconds":
            ok = isinstance(value, int | float | str) and not isinstance(value, bool)
        elif key == "enabled":
            ok = isinstance(value, bool)
        elif key == "args":
            ok = isinstance(value, list)
        elif key in ("kwargs", "options"):
            ok = isinstance(value, dict)
        else:
            continue
        if not ok:
            raise HTTPProblem(400, f"invalid schedule definition: {key} has the wrong type")


def definition_from(data: dict[str, Any]) -> ScheduleDefinition:
    """A validated definition from a JSON mapping; every problem is a 400 with one line."""
    _check_types(data)
    try:
        return validate(from_mapping(data))
    except (TypeError, ValueError, ArithmeticError, OverflowError) as exc:
        raise HTTPProblem(400, f"invalid schedule definition: {str(exc).splitlines()[0]}") from None


_definition = definition_from


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
    definition = _definition(data)
    try:
        await call(api.aschedule(definition.name))
    except Exception:
        pass
    else:
        raise HTTPProblem(409, f"a schedule named {definition.name!r} exists: PATCH it instead")
    await call(api.aupsert_schedule(definition, actor=actor_of(request)))
    return ok(_schedule_out(await call(api.aschedule(definition.name))), 201)


@api_route(Role.VIEWER)
async def get_schedule(request: Request) -> Response:
    from datetime import UTC, datetime

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
    definition = _definition({k: v for k, v in merged.items() if v is not None or k in changes})
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
    force = body.get("force", False)
    if not isinstance(force, bool):
        raise HTTPProblem(400, "force must be true or false")
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
    start, end, force = body.get("from"), body.get("to"), body.get("force", False)
    if not isinstance(start, str) or not isinstance(end, str):
        raise HTTPProblem(400, "a backfill needs from and to as ISO times")
    if not isinstance(force, bool):
        raise HTTPProblem(400, "force must be true or false")
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise HTTPProblem(400, "dry_run must be true or false")
    report = await call(
        api.abackfill(
            request.path_params["name"], instant_param(start, "from"), instant_param(end, "to"),
            force=force, dry_run=dry_run, actor=actor_of(request),
        )
    )  # fmt: skip
    return ok(dataclasses.asdict(report), 200 if dry_run else 201)


def _run_filters(request: Request) -> dict[str, Any]:
    since = text_param(request, "since")
    until = text_param(request, "until")
    return {
        "schedule": text_param(request, "schedule"),
        "task": text_param(request, "task"),
        "status": text_param(request, "status"),
        "trigger": text_param(request, "trigger"),
        "worker": text_param(request, "worker"),
        "since": instant_param(since, "since") if since else None,
        "until": instant_param(until, "until") if until else None,
    }


@api_route(Role.VIEWER)
async def list_runs(request: Request) -> Response:
    data = await call(
        api.aruns_page(
            **_run_filters(request),
            cursor=text_param(request, "cursor"),
            limit=int_param(request.query_params.get("limit"), "limit", 50, 1, 500),
        )
    )
    return ok(data)


@api_route(Role.VIEWER)
async def get_run(request: Request) -> Response:
    run = await call(api.arun(request.path_params["id"]))
    return ok({**run, "tree": await call(api.arun_tree(run["id"]))})


def _run_id(request: Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.path_params["id"])
    except ValueError:
        raise HTTPProblem(404, f"{request.path_params['id']!r} is not an execution id") from None


@api_route(Role.OPERATOR, writes=True)
async def retry_run(request: Request) -> Response:
    key = _run_id(request)
    result = await call(api.aretry_run(key, actor=actor_of(request)))
    return ok(
        {"execution_id": result.execution_id, "status": result.status.value, "retry_of": key}, 201
    )


@api_route(Role.OPERATOR, writes=True)
async def revoke_run(request: Request) -> Response:
    key = _run_id(request)
    await call(api.arun(key))
    done = await call(api.arevoke_runs([key], actor=actor_of(request)))
    if not done:
        raise HTTPProblem(409, "the run has finished: nothing to revoke")
    return ok({"revoked": key})


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


async def openapi(request: Request) -> Response:
    return JSONResponse(openapi_document(request.scope.get("root_path", "") + "/api/v1"))


def routes() -> list[BaseRoute]:
    return [
        Route("/openapi.json", openapi),
        Route("/schedules", list_schedules, methods=["GET"]),
        Route("/schedules", create_schedule, methods=["POST"]),
        Route("/schedules/{name:path}/trigger", trigger_schedule, methods=["POST"]),
        Route("/schedules/{name:path}/pause", pause_schedule, methods=["POST"]),
        Route("/schedules/{name:path}/resume", resume_schedule, methods=["POST"]),
        Route("/schedules/{name:path}/backfill", backfill_schedule, methods=["POST"]),
        Route("/schedules/{name:path}", get_schedule, methods=["GET"]),
        Route("/schedules/{name:path}", patch_schedule, methods=["PATCH"]),
        Route("/schedules/{name:path}", delete_schedule, methods=["DELETE"]),
        Route("/runs", list_runs, methods=["GET"]),
        Route("/runs/{id}/retry", retry_run, methods=["POST"]),
        Route("/runs/{id}/revoke", revoke_run, methods=["POST"]),
        Route("/runs/{id}", get_run, methods=["GET"]),
        Route("/stats", stats, methods=["GET"]),
        Route("/audit", audit, methods=["GET"]),
    ]


# --- OpenAPI ----------------------------------------------------------------------------

_ERROR = {
    "description": "An error with a one-line message",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {"type": "string"}},
            }
        }
    },
}
_OBJECT = {"content": {"application/json": {"schema": {"type": "object"}}}}


def _q(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


def _op(
    summary: str,
    role: str,
    *,
    params: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    ok_status: str = "200",
    extra: tuple[str, ...] = (),
) -> dict[str, Any]:
    responses: dict[str, Any] = {ok_status: {"description": "OK", **_OBJECT}}
    for code in ("400", "401", "403", *extra):
        responses[code] = _ERROR
    operation: dict[str, Any] = {
        "summary": summary,
        "description": f"Role: {role} or above.",
        "parameters": params or [],
        "responses": responses,
    }
    if body is not None:
        operation["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": body}},
        }
    return operation


_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
_TIME = {"type": "string", "format": "date-time"}
_DEFINITION = {
    "type": "object",
    "description": "A schedule definition with the keys of `scheduler export`.",
    "properties": {
        "name": {"type": "string"},
        "task": {"type": "string"},
        "cron": {"type": "string"},
        "interval_seconds": {"type": "number"},
        "every": {"type": "string"},
        "run_at": _TIME,
        "timezone": {"type": "string"},
        "args": {"type": "array"},
        "kwargs": {"type": "object"},
        "options": {"type": "object"},
        "enabled": {"type": "boolean"},
        "description": {"type": "string"},
    },
}


def openapi_document(base: str) -> dict[str, Any]:
    run_filters = [
        _q("schedule", "schedule name"),
        _q("task", "task name"),
        _q("status", "status code, e.g. failed"),
        _q("trigger", "schedule, catchup, manual, direct, backfill or retry"),
        _q("worker", "worker host name"),
        _q("since", "ISO time: runs created at or after", _TIME),
        _q("until", "ISO time: runs created before", _TIME),
        _q("cursor", "the `next` value of the previous page"),
        _q("limit", "page size (1-500)", {"type": "integer", "minimum": 1, "maximum": 500}),
    ]
    return {
        "openapi": "3.0.3",
        "info": {"title": "scheduler dashboard API", "version": "1"},
        "servers": [{"url": base}],
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "basic": {"type": "http", "scheme": "basic"},
            }
        },
        "security": [{"bearer": []}, {"basic": []}],
        "paths": {
            "/schedules": {
                "get": _op(
                    "List schedules (paged by name)",
                    "viewer",
                    params=[
                        _q("search", "substring of the name or task"),
                        _q("state", "all, enabled, paused or error"),
                        _q("after", "the `next` value of the previous page"),
                        _q(
                            "limit",
                            "page size (1-500)",
                            {"type": "integer", "minimum": 1, "maximum": 500},
                        ),
                    ],
                ),
                "post": _op(
                    "Create a schedule",
                    "admin",
                    body=_DEFINITION,
                    ok_status="201",
                    extra=("409",),
                ),
            },
            "/schedules/{name}": {
                "parameters": [_NAME],
                "get": _op("A schedule and its next 10 fire times", "viewer", extra=("404",)),
                "patch": _op(
                    "Change some fields of a schedule",
                    "admin",
                    body=_DEFINITION,
                    extra=("404",),
                ),
                "delete": _op("Delete a schedule", "admin", extra=("404",)),
            },
            "/schedules/{name}/trigger": {
                "parameters": [_NAME],
                "post": _op(
                    "Run now (trigger manual)",
                    "operator",
                    body={
                        "type": "object",
                        "properties": {
                            "force": {"type": "boolean"},
                            "args": {"type": "array"},
                            "kwargs": {"type": "object"},
                        },
                    },
                    ok_status="201",
                    extra=("404",),
                ),
            },
            "/schedules/{name}/pause": {
                "parameters": [_NAME],
                "post": _op(
                    "Pause with a reason",
                    "operator",
                    body={
                        "type": "object",
                        "required": ["reason"],
                        "properties": {"reason": {"type": "string"}},
                    },
                    extra=("404",),
                ),
            },
            "/schedules/{name}/resume": {
                "parameters": [_NAME],
                "post": _op(
                    "Resume (from the next slot)",
                    "operator",
                    body={"type": "object"},
                    extra=("404",),
                ),
            },
            "/schedules/{name}/backfill": {
                "parameters": [_NAME],
                "post": _op(
                    "Create the missing runs of a past range (trigger backfill)",
                    "operator",
                    body={
                        "type": "object",
                        "required": ["from", "to"],
                        "properties": {
                            "from": _TIME,
                            "to": _TIME,
                            "force": {"type": "boolean"},
                            "dry_run": {"type": "boolean"},
                        },
                    },
                    ok_status="201",
                    extra=("404",),
                ),
            },
            "/runs": {
                "get": _op(
                    "List runs newest first (keyset paging)",
                    "viewer",
                    params=run_filters,
                    extra=("404",),
                )
            },
            "/runs/{id}": {
                "parameters": [_ID],
                "get": _op("Every column of a run", "viewer", extra=("404",)),
            },
            "/runs/{id}/retry": {
                "parameters": [_ID],
                "post": _op(
                    "Run a failed, timed-out, lost or revoked run again as a new run (trigger retry)",
                    "operator",
                    ok_status="201",
                    extra=("404", "409"),
                ),
            },
            "/runs/{id}/revoke": {
                "parameters": [_ID],
                "post": _op("Revoke a run not yet finished", "operator", extra=("404", "409")),
            },
            "/stats": {
                "get": _op(
                    "Per schedule and per task counts and durations",
                    "viewer",
                    params=[_q("since", "ISO time or 1h, 24h, 7d")],
                )
            },
            "/audit": {
                "get": _op(
                    "Audit entries newest first",
                    "viewer",
                    params=[
                        _q("since", "ISO time or 1h, 24h, 7d"),
                        _q(
                            "before",
                            "entry id to page back from",
                            {"type": "integer", "minimum": 0},
                        ),
                        _q(
                            "limit",
                            "page size (1-1000)",
                            {"type": "integer", "minimum": 1, "maximum": 1000},
                        ),
                    ],
                )
            },
        },
    }
