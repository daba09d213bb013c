"""The dashboard: an ASGI application (Starlette) serving the pages and `/api/v1`.

Every handler goes through `scheduler.api` (no SQL here). The API's coroutines run on the
process's runtime loop (its one engine), awaited from the server's loop, so the dashboard
can be mounted in any ASGI application without a second engine::

    from scheduler.web import create_app
    app.mount("/scheduler", create_app())
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import jinja2
from sqlalchemy.exc import DBAPIError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from config.settings import get_settings
from scheduler import api
from scheduler.core.accounts import Role
from scheduler.core.exceptions import (
    ConflictError,
    DuplicateError,
    InvalidScheduleError,
    NotFoundError,
    SchedulerError,
)
from scheduler.observability import metrics as project_metrics
from scheduler.runtime.db import get_runtime
from scheduler.runtime.retry import unreachable
from scheduler.runtime.urls import redact
from scheduler.web import charts, pages
from scheduler.web.auth import (
    LOCAL_ACTOR,
    HTTPProblem,
    Principal,
    SignInLimiter,
    basic_credentials,
    check_csrf,
    csrf_token,
    is_loopback,
)

T = TypeVar("T")
log = logging.getLogger("scheduler.web")
HERE = Path(__file__).parent
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}
ACCOUNTS_CHECK_S = 2.0
BASIC_CACHE_S = 60.0


async def call(coro: Coroutine[Any, Any, T]) -> T:
    """Await `coro` on the process's runtime loop (where its engine lives)."""
    runtime = get_runtime()
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, runtime.loop))


class State:
    """Per application: the sign-in limiter and a short cache of "does any account exist"."""

    def __init__(self, *, open_without_accounts: bool) -> None:
        self.open_without_accounts = open_without_accounts
        self.limiter = SignInLimiter()
        self._accounts: tuple[float, bool] | None = None
        self.basic_seen: dict[str, tuple[float, Principal]] = {}
        """Recently verified HTTP Basic credentials (by SHA-256 of the header), so a script
        polling the API does not pay a scrypt hash per request; kept BASIC_CACHE_S."""

    async def has_accounts(self) -> bool:
        now = asyncio.get_running_loop().time()
        if (
            self._accounts is None
            or now - self._accounts[0] > ACCOUNTS_CHECK_S
            or not self._accounts[1]
        ):
            self._accounts = (now, await call(api.ahas_accounts()))
        return self._accounts[1]


def state_of(request: Request) -> State:
    found: State = request.app.state.scheduler
    return found


def client_host(request: Request) -> str:
    return request.client.host if request.client else ""


async def principal_of(request: Request) -> Principal | None:
    """The caller, from (in order) a Bearer token, HTTP Basic, the session cookie; or the
    local admin when no account exists and the request comes from loopback."""
    cached = request.scope.get("scheduler.principal", False)
    if cached is not False:
        return cached  # type: ignore[no-any-return]
    found = await _find_principal(request)
    request.scope["scheduler.principal"] = found
    return found


async def _find_principal(request: Request) -> Principal | None:
    state = state_of(request)
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value:
        token = await call(api.aauthenticate_token(value.strip()))
        if token is None:
            raise HTTPProblem(401, "unknown or removed API token")
        return Principal(token[0], token[1], "token")
    if scheme.lower() == "basic" and value:
        pair = basic_credentials(value.strip())
        if pair is None:
            raise HTTPProblem(401, "malformed HTTP Basic credentials")
        name, password = pair
        key = hashlib.sha256(value.strip().encode()).hexdigest()
        now = time.monotonic()
        seen = state.basic_seen.get(key)
        if seen is not None and now - seen[0] < BASIC_CACHE_S:
            return seen[1]
        state.limiter.check(client_host(request), name)
        role = await call(api.aauthenticate_password(name, password))
        if role is None:
            state.limiter.failed(client_host(request), name)
            raise HTTPProblem(
                401, "wrong user name or password", {"WWW-Authenticate": 'Basic realm="scheduler"'}
            )
        found = Principal(name, role, "basic")
        if len(state.basic_seen) > 1000:
            state.basic_seen.clear()
        state.basic_seen[key] = (now, found)
        return found
    if header:
        raise HTTPProblem(401, "unsupported Authorization scheme: use Bearer or Basic")
    user = request.session.get("user")
    if isinstance(user, str):
        role = await call(api.auser_role(user))
        if role is not None:
            return Principal(user, role, "session")
        request.session.pop("user", None)
    if (
        state.open_without_accounts
        and is_loopback(client_host(request))
        and not await state.has_accounts()
    ):
        return Principal(LOCAL_ACTOR, Role.ADMIN, "local")
    return None


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


def problem_for(exc: BaseException) -> HTTPProblem:
    """The status and one-line message of an error; never a DSN, secret or traceback."""
    if isinstance(exc, HTTPProblem):
        return exc
    if isinstance(exc, NotFoundError):
        return HTTPProblem(404, str(exc))
    if isinstance(exc, DuplicateError | ConflictError):
        return HTTPProblem(409, str(exc))
    if isinstance(exc, InvalidScheduleError):
        return HTTPProblem(400, str(exc))
    if unreachable(exc):
        return HTTPProblem(503, "the database or broker cannot be reached right now")
    if isinstance(exc, SchedulerError):
        return HTTPProblem(400, redact(str(exc)).splitlines()[0])
    if isinstance(exc, DBAPIError):
        name = type(exc.orig).__name__ if exc.orig is not None else ""
        if "DataError" in name or "Integrity" in name or "Invalid" in name or "Numeric" in name:
            return HTTPProblem(
                400, "the database refused a value: check the field types and ranges"
            )
        log.warning(
            "database error: %s", redact(str(exc.orig)).splitlines()[0] if exc.orig else name
        )
        return HTTPProblem(503, "the database refused the request: see the server log")
    log.exception("unexpected error", exc_info=exc)
    return HTTPProblem(500, "internal error: see the server log")


Handler = Callable[[Request], Awaitable[Response]]


def api_route(role: Role, *, writes: bool = False) -> Callable[[Handler], Handler]:
    """An API handler: checks the role (and CSRF for cookie sessions when it writes),
    answers errors as `{"error": "..."}` with their status."""

    def wrap(handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            try:
                principal = require_role(await principal_of(request), role)
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


def require_role(principal: Principal | None, role: Role) -> Principal:
    from scheduler.web.auth import require

    return require(principal, role)


def actor_of(request: Request) -> str:
    return str(request.scope.get("scheduler.actor") or LOCAL_ACTOR)


class SecurityHeaders:
    """Adds the Content-Security-Policy and friends to every response, and `Server-Timing`
    (the time to the response's start, for benchmarks and the browser's dev tools)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = time.perf_counter()

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [
                    (k.encode(), v.encode())
                    for k, v in SECURITY_HEADERS.items()
                    if k.encode() not in present
                ]
                elapsed_ms = (time.perf_counter() - started) * 1000
                extra.append((b"server-timing", f"app;dur={elapsed_ms:.1f}".encode()))
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)


def templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        local=pages.local_time,
        rel=pages.relative,
        ms=pages.duration,
        pretty=pages.pretty_json,
        when=pages.describe,
        pct=pages.percent,
    )
    env.globals.update(colour=charts.colour, sparkline=charts.sparkline)
    return env


def create_app(*, open_without_accounts: bool = True, secret_key: str | None = None) -> Starlette:
    """The dashboard as an ASGI application.

    `open_without_accounts`: while no web user or token exists, requests from loopback are
    served as the local admin (`scheduler web` on 127.0.0.1 does this); once an account
    exists every request needs credentials. `secret_key` signs the session cookie (default:
    `SCHEDULER_WEB_SECRET`, else a random key per process: sessions end on restart)."""
    from scheduler.web import jsonapi, views

    key = secret_key or get_settings().web_secret or secrets.token_urlsafe(32)
    routes: list[BaseRoute] = [
        *views.routes(),
        Mount("/api/v1", routes=jsonapi.routes()),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
        Route("/livez", livez),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
    ]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(
                SessionMiddleware,
                secret_key=key,
                session_cookie="scheduler_session",
                same_site="strict",
                https_only=False,
                max_age=12 * 3600,
            ),
        ],
        exception_handlers={404: not_found, 405: not_allowed},
    )
    app.state.scheduler = State(open_without_accounts=open_without_accounts)
    app.state.templates = templates()
    return app


async def not_found(request: Request, exc: Exception) -> Response:
    if request.url.path.startswith(("/api/", request.scope.get("root_path", "") + "/api/")):
        return JSONResponse({"error": "no such endpoint: see /api/v1/openapi.json"}, 404)
    return PlainTextResponse("not found", 404)


async def not_allowed(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": f"method {request.method} is not allowed here"}, 405)


async def livez(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    try:
        await asyncio.wait_for(call(api.ahas_accounts()), timeout=5)
    except Exception as exc:
        return JSONResponse({"status": "unavailable", "error": problem_for(exc).message}, 503)
    return JSONResponse({"status": "ready"})


_metrics_refreshed_at = -float("inf")


async def _refresh_database_metrics() -> None:
    async with get_runtime().session() as session:
        await project_metrics.database_metrics().refresh(session)


async def metrics(request: Request) -> Response:
    """This process's metrics and the database's series (the outbox, `monitored` schedules),
    read again at most every `SCHEDULER_METRICS_REFRESH_S` (or ten times a refresh's cost)."""
    global _metrics_refreshed_at
    source = project_metrics.database_metrics()
    every_s = max(get_settings().metrics_refresh_s, 10 * source.refresh_s)
    if time.monotonic() - _metrics_refreshed_at >= every_s:
        _metrics_refreshed_at = time.monotonic()
        await call(_refresh_database_metrics())
    body = project_metrics.exposition(with_database=True)
    return Response(body, media_type=project_metrics.CONTENT_TYPE)


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


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    env: jinja2.Environment = request.app.state.templates
    principal: Principal | None = request.scope.get("scheduler.principal")
    live_poll = request.headers.get("x-live") == "1"
    flash = None if live_poll else request.session.pop("flash", None)
    html = env.get_template(template).render(
        request=request,
        me=principal,
        csrf=csrf_token(request),
        flash=flash,
        base=request.scope.get("root_path", ""),
        can_operate=bool(principal and principal.role.allows(Role.OPERATOR)),
        can_admin=bool(principal and principal.role.allows(Role.ADMIN)),
        now=datetime.now(UTC),
        **context,
    )
    return HTMLResponse(html, status_code=status)


def flash(request: Request, message: str, *, error: bool = False) -> None:
    request.session["flash"] = {"message": message[:500], "error": error}


def redirect(request: Request, path: str) -> RedirectResponse:
    return RedirectResponse(request.scope.get("root_path", "") + path, status_code=303)
