"""What every API handler shares: `api_route` checks the caller's role (and the CSRF header
for cookie sessions when it writes) and answers any error as `{"error": "one line"}` with
its status; `ok` answers a value as JSON (times ISO, decimals as numbers, UUIDs as text)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from scheduler.core.accounts import Role
from scheduler.web.auth import check_csrf, require
from scheduler.web.principals import principal_of
from scheduler.web.problems import problem_for

Handler = Callable[[Request], Awaitable[Response]]


def api_route(role: Role, *, writes: bool = False) -> Callable[[Handler], Handler]:
    """An API handler: checks the role (and CSRF for cookie sessions when it writes),
    answers errors as `{"error": "..."}` with their status."""

    def wrap(handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            try:
                principal = require(await principal_of(request), role)
                if writes and principal.uses_cookie:
                    check_csrf(request, request.headers.get("x-csrf-token"))
                request.scope["scheduler.actor"] = principal.name
                return await handler(request)
            except Exception as exc:
                found = problem_for(exc)
                return JSONResponse(
                    {"error": found.message}, status_code=found.status, headers=found.headers
                )

        endpoint.__name__ = handler.__name__
        endpoint.__doc__ = handler.__doc__
        return endpoint

    return wrap


def jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def ok(value: Any, status: int = 200) -> Response:
    return JSONResponse(jsonable(value), status_code=status)
