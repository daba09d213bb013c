"""`/api/v1/openapi.json`: the OpenAPI 3 document of the JSON API, built by hand so that it
says exactly what the handlers check (roles, bodies, the error shape)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response


async def openapi(request: Request) -> Response:
    return JSONResponse(openapi_document(request.scope.get("root_path", "") + "/api/v1"))


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
